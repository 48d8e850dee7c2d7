"""Releases: a progressive rollout is gated by an analysis that can fail it.

A Flagger Canary without metrics promotes on time alone, whatever the canary does; one
whose metrics have no threshold cannot fail. Where the stack config names the checks a
release must pass (prod: the LLM cost per task among them), each must be there."""

from __future__ import annotations

from typing import Any

from pydantic import StrictBool

from costing.view import UNKNOWN, ResourceView, dig
from policies.rule import ResourceRule, Rule, RuleConfig
from policies.violation import Violation, undetermined, violation

CANARY = "kubernetes:flagger.app/v1beta1:Canary"

ROLLOUT_ANALYSIS = "rollout-has-analysis"


class RolloutAnalysisConfig(RuleConfig):
    # Checks every rollout's analysis must include, by metric name.
    required_metrics: tuple[str, ...] = ()
    # `skipAnalysis: true` is the manual promotion: allowed unless the stack says not.
    allow_skip_analysis: StrictBool = True


def _bounded(metric: Any) -> bool:
    bounds = dig(metric, "thresholdRange")
    return isinstance(bounds, dict) and any(
        isinstance(bounds.get(side), int | float) for side in ("min", "max")
    )


def check_rollout_analysis(resource: ResourceView, cfg: RolloutAnalysisConfig) -> list[Violation]:
    if resource.type != CANARY:
        return []
    analysis = resource.get("spec", "analysis")
    skip = resource.get("spec", "skipAnalysis")
    if analysis is UNKNOWN or skip is UNKNOWN:
        return [undetermined(ROLLOUT_ANALYSIS, resource, "spec.analysis unknown at preview.")]
    found: list[Violation] = []
    if skip is True and not cfg.allow_skip_analysis:
        found.append(
            violation(
                ROLLOUT_ANALYSIS,
                resource,
                "sets spec.skipAnalysis: true, which promotes without analysis; this stack "
                "does not allow it (allow_skip_analysis).",
            )
        )
    metrics = dig(analysis, "metrics")
    if metrics is UNKNOWN:
        return [undetermined(ROLLOUT_ANALYSIS, resource, "spec.analysis.metrics unknown.")]
    metrics = metrics if isinstance(metrics, list) else []
    if not metrics:
        found.append(
            violation(
                ROLLOUT_ANALYSIS,
                resource,
                "has no spec.analysis.metrics: it would promote on time alone; add checks "
                "with a thresholdRange.",
            )
        )
    unbounded = [str(dig(m, "name")) for m in metrics if not _bounded(m)]
    if unbounded:
        found.append(
            violation(
                ROLLOUT_ANALYSIS,
                resource,
                f"spec.analysis.metrics {unbounded} have no thresholdRange min or max, so "
                "they can never fail.",
            )
        )
    missing = sorted(set(cfg.required_metrics) - {dig(m, "name") for m in metrics})
    if missing:
        found.append(
            violation(
                ROLLOUT_ANALYSIS,
                resource,
                f"spec.analysis.metrics lacks {missing}, which this stack requires of every "
                "release (required_metrics).",
            )
        )
    return found


RULES: list[Rule] = [
    ResourceRule(
        ROLLOUT_ANALYSIS,
        "Every Flagger Canary has an analysis whose metrics each have a threshold, "
        "including the stack's required checks.",
        "mandatory",
        RolloutAnalysisConfig,
        check_rollout_analysis,
        "Skipped with an advisory note when the analysis is unknown at preview.",
    ),
]
