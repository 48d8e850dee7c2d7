"""The release rule: a Flagger Canary is gated by an analysis that can fail it."""

from __future__ import annotations

from typing import Any

from policy_fixtures import only, resource

from costing.view import UNKNOWN, ResourceView
from policies.rules.release import RolloutAnalysisConfig, check_rollout_analysis

COST = {"name": "llm-cost-per-task", "templateRef": {"name": "c"}, "thresholdRange": {"max": 1.15}}
ERRORS = {"name": "error-ratio", "templateRef": {"name": "e"}, "thresholdRange": {"max": 0.01}}
PROD = RolloutAnalysisConfig(required_metrics=["error-ratio", "llm-cost-per-task"])


def canary(*metrics: dict[str, Any], skip: Any = False, analysis: Any = None) -> ResourceView:
    spec = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "agent-api"},
        "skipAnalysis": skip,
        "analysis": analysis
        if analysis is not None
        else {"interval": "1m", "threshold": 5, "metrics": list(metrics)},
    }
    return resource(
        "kubernetes:flagger.app/v1beta1:Canary",
        "agent-api",
        {"metadata": {"name": "agent-api", "namespace": "agents"}, "spec": spec},
    )


def test_a_bounded_analysis_with_the_required_checks_passes() -> None:
    assert check_rollout_analysis(canary(ERRORS, COST), PROD) == []
    assert check_rollout_analysis(canary(ERRORS), RolloutAnalysisConfig()) == []


def test_no_metrics_promotes_on_time_alone() -> None:
    found = only(check_rollout_analysis(canary(), RolloutAnalysisConfig()))
    assert "no spec.analysis.metrics" in found.message


def test_a_metric_without_bounds_cannot_fail() -> None:
    unbounded = {"name": "p99-latency", "templateRef": {"name": "p"}}
    found = only(check_rollout_analysis(canary(ERRORS, unbounded), RolloutAnalysisConfig()))
    assert "['p99-latency'] have no thresholdRange" in found.message


def test_the_stacks_required_checks_must_all_be_there() -> None:
    found = only(check_rollout_analysis(canary(ERRORS), PROD))
    assert "lacks ['llm-cost-per-task']" in found.message


def test_skipping_the_analysis_only_where_allowed() -> None:
    assert check_rollout_analysis(canary(ERRORS, COST, skip=True), PROD) == []
    strict = RolloutAnalysisConfig(allow_skip_analysis=False)
    found = only(check_rollout_analysis(canary(ERRORS, COST, skip=True), strict))
    assert "skipAnalysis: true" in found.message


def test_an_unknown_analysis_is_undetermined() -> None:
    (found,) = check_rollout_analysis(canary(analysis=UNKNOWN), PROD)
    assert found.undetermined


def test_prods_canaries_pass_under_prods_settings() -> None:
    from stacks.simulate import simulate

    canaries = simulate("prod").of_type("kubernetes:flagger.app/v1beta1:Canary")
    assert len(canaries) == 2
    for c in canaries:
        view = resource(c.type, c.name, c.inputs)
        assert check_rollout_analysis(view, PROD) == []
