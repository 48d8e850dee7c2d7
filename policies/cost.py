"""The cost command: a stack's estimated monthly cost, item by item.

    python -m policies.cost --stack prod [--json] [--preview]

prints an Infracost-style table for any stack, from the program run under mocks, priced
by the same model as the budget policy and the program's cost output (`costing`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from costing.model import estimate
from costing.nodepools import scaled_workloads
from policies.harness import simulated_views


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.cost", description=__doc__)
    parser.add_argument("--stack", required=True, help="local, dev or prod")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--preview", action="store_true", help="simulate a preview (unknowns)")
    args = parser.parse_args(argv)

    views = simulated_views(args.stack, preview=args.preview)
    result = estimate(views)
    # The chain behind the node lines: what each autoscaled (or GPU) workload requests at
    # its autoscaler's maximum, served by the node groups and NodePools priced above.
    at_max = [w.line() for w in scaled_workloads(views)] if result.items else []
    if args.json:
        print(json.dumps({"stack": args.stack, **result.as_json(), "at_max": at_max}, indent=2))
    else:
        print(f"Estimated monthly cost of stack '{args.stack}'\n")
        print(result.table())
        if at_max:
            print("\nAt the autoscalers' maxima (priced through the nodes above):")
            print("\n".join(f"  - {line}" for line in at_max))
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
