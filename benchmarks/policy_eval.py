"""Policy evaluation: the whole pack over the prod stack and over 1,000 resources.

The prod stack's resources come from `simulate("prod")` (up mode), exactly what
`make policy` checks. The synthetic stack cycles through those same resources until
it has 1,000: copy k>0 of a resource gets `-copyk` appended to its Pulumi name, its
URN and its Kubernetes `metadata.name`, so the set has the prod stack's mix of
Deployments, Services, NetworkPolicies, AWS resources and components, with unique names.

Timed figures (one process, after one untimed warm-up pass, since the engine's policy
host is also a long-lived process that has imported the pack; a `gc.collect()` before
each sample):
  baseline  the view normalisation alone (`ResourceView.of` over every resource);
  pack      normalisation plus `policies.harness.evaluate` with every rule at the
            stack's configured levels (`policies/config/prod.json`).
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.stats import Series, timed
from costing.view import ResourceView
from policies.catalog import RULES
from policies.harness import evaluate
from policies.pack_config import ConfiguredRule, configure, load_raw

SYNTHETIC_SIZE = 1000

RawResource = tuple[str, str, str, dict[str, Any]]


def synthesise(resources: Sequence[RawResource], size: int) -> list[RawResource]:
    out: list[RawResource] = []
    for index in range(size):
        type_, name, urn, inputs = resources[index % len(resources)]
        copy_number = index // len(resources)
        if copy_number == 0:
            out.append((type_, name, urn, inputs))
            continue
        suffix = f"-copy{copy_number}"
        props = copy.deepcopy(inputs)
        metadata = props.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
            metadata["name"] += suffix
        out.append((type_, name + suffix, urn + suffix, props))
    return out


def _views(resources: Sequence[RawResource]) -> list[ResourceView]:
    return [ResourceView.of(*resource) for resource in resources]


@dataclass
class PolicyFigure:
    label: str
    resources: int
    baseline: Series = field(default_factory=Series)
    pack: Series = field(default_factory=Series)
    # Mandatory/advisory counts, so a reader can see the pack did real work.
    violations: str = ""


def _measure(
    label: str, resources: Sequence[RawResource], rules: Sequence[ConfiguredRule], reps: int
) -> PolicyFigure:
    figure = PolicyFigure(label, len(resources))
    report = evaluate(_views(resources), rules)
    figure.violations = (
        f"{len(report.mandatory)} mandatory, {len(report.advisory)} advisory, "
        f"{len(report.undetermined)} notes"
    )
    for _ in range(reps):
        # The simulation left a large heap: collect first, so that no sample pays for
        # the previous one's garbage.
        gc.collect()
        figure.baseline.add(timed(lambda: _views(resources)))
        gc.collect()
        figure.pack.add(timed(lambda: evaluate(_views(resources), rules)))
    return figure


def run(repetitions: int, progress: Callable[[str], None]) -> list[PolicyFigure]:
    from stacks.simulate import simulate

    prod = [(r.type, r.name, r.urn, r.inputs) for r in simulate("prod").resources]
    rules = configure(RULES, load_raw("prod"))
    figures = []
    for label, resources in (
        ("prod stack", prod),
        (f"synthetic, {SYNTHETIC_SIZE} resources", synthesise(prod, SYNTHETIC_SIZE)),
    ):
        figure = _measure(label, resources, rules, repetitions)
        progress(
            f"policy {label}: pack median {figure.pack.median * 1000:.1f} ms, "
            f"views only {figure.baseline.median * 1000:.1f} ms"
        )
        figures.append(figure)
    return figures
