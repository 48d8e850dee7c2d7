"""Runs the whole pack over a stack under mocks, as the engine would, with no cloud.

    python -m policies.harness --stack prod [--preview] [--config FILE]

Resource rules run on each resource, stack rules on the whole list, at the levels
and thresholds of the stack's policy config: mandatory violations fail (exit 1),
advisory ones are printed as warnings, disabled rules are skipped. Checks a value
unknown at preview kept from deciding are printed as notes, as the engine does. A bad
policy config or stack config exits 2 with the problems, before anything is simulated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from costing.view import ResourceView
from policies.catalog import RULES
from policies.pack_config import ConfiguredRule, PackConfigError, configure, load_file, load_raw
from policies.rule import ResourceRule
from policies.violation import Violation
from stacks.config import ConfigError
from stacks.simulate import Simulation, simulate


@dataclass(frozen=True)
class Report:
    mandatory: list[Violation] = field(default_factory=list)
    advisory: list[Violation] = field(default_factory=list)
    undetermined: list[Violation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mandatory

    def render(self) -> str:
        lines = [f"MANDATORY {v}" for v in self.mandatory]
        lines += [f"ADVISORY  {v}" for v in self.advisory]
        lines += [f"NOTE      {v} (not decided at preview)" for v in self.undetermined]
        verdict = "FAILED" if self.mandatory else "passed"
        lines.append(
            f"policy pack {verdict}: {len(self.mandatory)} mandatory, "
            f"{len(self.advisory)} advisory violation(s), {len(self.undetermined)} note(s)"
        )
        return "\n".join(lines)


def evaluate(resources: Sequence[ResourceView], rules: Sequence[ConfiguredRule]) -> Report:
    report = Report()
    for item in rules:
        if item.enforcement == "disabled":
            continue
        rule = item.rule
        found: list[Violation] = []
        if isinstance(rule, ResourceRule):
            for resource in resources:
                found.extend(rule.check(resource, item.config))
        else:
            found.extend(rule.check(resources, item.config))
        for violation in found:
            if violation.undetermined:
                report.undetermined.append(violation)
            elif item.enforcement == "mandatory":
                report.mandatory.append(violation)
            else:
                report.advisory.append(violation)
    return report


def views_of(simulation: Simulation) -> list[ResourceView]:
    return [ResourceView.of(r.type, r.name, r.urn, r.inputs) for r in simulation.resources]


def simulated_views(
    stack: str, *, preview: bool = False, overrides: Mapping[str, Any] | None = None
) -> list[ResourceView]:
    """The stack's resources from its program run under mocks."""
    return views_of(simulate(stack, overrides=overrides, preview=preview))


def run_stack(
    stack: str,
    *,
    preview: bool = False,
    raw_config: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Report:
    rules = configure(RULES, load_raw(stack) if raw_config is None else raw_config)
    return evaluate(simulated_views(stack, preview=preview, overrides=overrides), rules)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.harness", description=__doc__)
    parser.add_argument("--stack", required=True, help="local, dev or prod")
    parser.add_argument("--preview", action="store_true", help="simulate a preview (unknowns)")
    parser.add_argument("--config", type=Path, help="policy config file (default: the stack's)")
    args = parser.parse_args(argv)
    try:
        raw = load_file(args.config) if args.config else None
        report = run_stack(args.stack, preview=args.preview, raw_config=raw)
    except (PackConfigError, ConfigError) as error:
        parser.exit(2, f"{error}\n")
    print(report.render())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
