"""The cost command: a stack's estimated monthly cost, item by item, or its change.

    python -m policies.cost --stack prod [--json] [--preview]
    python -m policies.cost --diff origin/main --stack dev --stack prod

prints an Infracost-style table for any stack, from the program run under mocks, priced
by the same model as the budget policy and the program's cost output (`costing`).

With --diff REF it prices each stack twice, as the git ref REF has it and as this
checkout has it, and prints a Markdown table of what changed (the PR comment). The base
side is REF's own program, config and price table: REF's tree is extracted into a
temporary directory and its own cost command runs there, with this interpreter. Nothing
of this checkout (its build/, stack state, git worktrees) is touched.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from costing.diff import diff, markdown
from costing.model import estimate
from costing.nodepools import scaled_workloads
from costing.prices import load_prices
from policies.catalog import RULES
from policies.harness import simulated_views
from policies.pack_config import PackConfigError, configure, load_raw
from policies.rules.budget import BUDGET, BudgetConfig
from stacks.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


class CostDiffError(RuntimeError):
    """The base side could not be priced; the message says which ref and why."""


def _today() -> date:
    return datetime.now(UTC).date()


def priced(stack: str, *, preview: bool = False) -> dict[str, Any]:
    views = simulated_views(stack, preview=preview)
    result = estimate(views)
    return {
        "stack": stack,
        **result.as_json(),
        # The chain behind the node lines: each autoscaled (or GPU) workload at its maximum.
        "at_max": [w.line() for w in scaled_workloads(views)] if result.items else [],
        "prices_age_days": load_prices().age_days(_today()),
    }


def max_increase_pct(stack: str) -> float | None:
    """The stack's budget growth limit, from this checkout's policy config."""
    for configured in configure(RULES, load_raw(stack)):
        if configured.rule.name == BUDGET and isinstance(configured.config, BudgetConfig):
            return configured.config.max_increase_pct
    return None


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    git = shutil.which("git")
    if git is None:
        raise CostDiffError("--diff needs git on PATH")
    # Arguments as a list, no shell: a ref is only ever a git argument.
    return subprocess.run([git, "-C", str(ROOT), *args], capture_output=True, check=False)  # noqa: S603


@contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """REF's committed tree in a temporary directory, removed afterwards."""
    archive = _git("archive", "--format=tar", f"{ref}^{{tree}}")
    if archive.returncode != 0:
        message = archive.stderr.decode(errors="replace").strip()
        raise CostDiffError(f"--diff {ref}: git cannot read that ref: {message}")
    with tempfile.TemporaryDirectory(prefix="cost-diff-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def base_estimate(tree: Path, ref: str, stack: str) -> dict[str, Any] | None:
    """The stack's cost as REF's own cost command prints it; None if REF has no such stack."""
    if not (tree / f"Pulumi.{stack}.yaml").exists():
        return None
    # The base's modules come first on the path, ahead of this checkout's editable install.
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONSAFEPATH", None)
    proc = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "policies.cost", "--stack", stack, "--json"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # Exit 1 is an estimate with unpriced resources: still an estimate, shown as such.
    try:
        result: dict[str, Any] = json.loads(proc.stdout) if proc.returncode in (0, 1) else {}
    except json.JSONDecodeError:
        result = {}
    if "items" not in result:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise CostDiffError(
            f"--diff {ref}: the base's `python -m policies.cost --stack {stack} --json` "
            f"exited {proc.returncode} without an estimate:\n{tail}"
        )
    return result


def cost_diff(ref: str, stacks: Sequence[str]) -> str:
    if ref.startswith("-"):
        raise CostDiffError(f"--diff {ref!r} is not a git ref (git would read it as an option)")
    short = _git("rev-parse", "--short", f"{ref}^{{commit}}").stdout.decode().strip() or ref
    with checkout(ref) as tree:
        before = {stack: base_estimate(tree, ref, stack) for stack in stacks}
    diffs = [diff(stack, before[stack], priced(stack), max_increase_pct(stack)) for stack in stacks]
    age = load_prices().age_days(_today())
    label = ref if short == ref else f"{ref} ({short})"
    return markdown(diffs, label, f" ({age} days old)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.cost", description=__doc__)
    parser.add_argument(
        "--stack",
        action="append",
        required=True,
        help="local, dev or prod; with --diff, repeat it to compare several stacks",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--preview", action="store_true", help="simulate a preview (unknowns)")
    parser.add_argument(
        "--diff",
        metavar="REF",
        help="print the Markdown change in cost from git ref REF (e.g. origin/main)",
    )
    parser.add_argument(
        "--output", type=Path, help="with --diff, also write the Markdown to this file"
    )
    args = parser.parse_args(argv)

    if args.output and not args.diff:
        parser.error("--output goes with --diff")
    if args.diff:
        if args.json or args.preview:
            parser.error("--diff prints Markdown of the stacks as `up` sees them")
        try:
            text = cost_diff(args.diff, args.stack)
        except (CostDiffError, PackConfigError, ConfigError) as error:
            parser.exit(2, f"{error}\n")
        print(text, end="")
        if args.output:
            args.output.write_text(text)
        return 0
    if len(args.stack) != 1:
        parser.error("give one --stack, or several with --diff")
    (stack,) = args.stack
    if args.json:
        report = priced(stack, preview=args.preview)
        print(json.dumps(report, indent=2))
        return 1 if report["problems"] else 0
    views = simulated_views(stack, preview=args.preview)
    result = estimate(views)
    print(f"Estimated monthly cost of stack '{stack}'\n")
    print(result.table())
    # The chain behind the node lines: what each autoscaled (or GPU) workload requests at
    # its autoscaler's maximum, served by the node groups and NodePools priced above.
    at_max = [w.line() for w in scaled_workloads(views)] if result.items else []
    if at_max:
        print("\nAt the autoscalers' maxima (priced through the nodes above):")
        print("\n".join(f"  - {line}" for line in at_max))
    print(f"Age: {load_prices().age(_today())}.")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
