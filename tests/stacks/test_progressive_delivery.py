"""prod's releases go through Flagger: what the program declares for it, and the config
errors that keep the manual and the automatic flow apart."""

from __future__ import annotations

import json

import pytest
from stack_problems import prod_problems

from components.kube import WORKLOAD_LABEL
from components.progressive_delivery import ProgressiveDeliveryConfig, analysis_checks
from stacks.simulate import Simulation, stack_file_config

CANARY = "kubernetes:flagger.app/v1beta1:Canary"
TEMPLATE = "kubernetes:flagger.app/v1beta1:MetricTemplate"


@pytest.fixture(scope="module")
def prod() -> Simulation:
    from stacks.simulate import simulate

    return simulate("prod")


def test_flagger_is_pinned_and_steps_the_gateways_weights(prod: Simulation) -> None:
    (chart,) = [
        r for r in prod.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"] == "flagger"
    ]
    assert chart.inputs["version"] == "1.36.1"
    values = chart.inputs["values"]
    assert values["meshProvider"] == "gatewayapi:v1"
    assert values["selectorLabels"] == WORKLOAD_LABEL
    assert values["metricsServer"] == "http://prometheus.agents.svc.cluster.local:9090"
    # Flagger writes the HTTPRoute; the stack's own would fight it.
    assert prod.of_type("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute") == []


def test_the_api_canary_steps_through_the_gateway_and_the_workers_run_beside(
    prod: Simulation,
) -> None:
    canaries = {c.inputs["metadata"]["name"]: c.inputs["spec"] for c in prod.of_type(CANARY)}
    assert set(canaries) == {"agent-api", "agent-worker"}
    api, worker = canaries["agent-api"], canaries["agent-worker"]
    assert api["provider"] == "gatewayapi:v1"
    assert api["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "agent-api"}
    assert api["autoscalerRef"] == {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "name": "agent-api",
    }
    assert api["service"]["hosts"] == ["agents.internal.example.com"]
    assert api["service"]["gatewayRefs"] == [{"name": "agent-api", "namespace": "agents"}]
    # Not `agent-api`: that Service is the stack's own, reaching every API pod.
    assert api["service"]["name"] == "agent-api-release"
    assert (api["analysis"]["stepWeight"], api["analysis"]["maxWeight"]) == (10, 50)
    assert api["skipAnalysis"] is False
    assert worker["provider"] == "kubernetes"
    assert worker["analysis"]["iterations"] == 10
    assert "stepWeight" not in worker["analysis"]
    for spec in (api, worker):
        metrics = {m["name"]: m for m in spec["analysis"]["metrics"]}
        assert set(metrics) == {"error-ratio", "p99-latency", "llm-cost-per-task"}
        assert metrics["llm-cost-per-task"]["thresholdRange"] == {"max": 1.15}
        assert spec["analysis"]["threshold"] == 5


def test_each_check_is_a_metric_template_on_the_stacks_prometheus(prod: Simulation) -> None:
    templates = {t.inputs["metadata"]["name"]: t.inputs["spec"] for t in prod.of_type(TEMPLATE)}
    checks = analysis_checks(ProgressiveDeliveryConfig(max_cost_per_task_increase_pct=15))
    assert templates == {
        f"agent-{c.name}": {
            "provider": {
                "type": "prometheus",
                "address": "http://prometheus.agents.svc.cluster.local:9090",
            },
            "query": c.query,
        }
        for c in checks
    }
    clients = prod.named(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy", "monitoring-query-clients"
    ).inputs["spec"]["ingress"][0]["from"]
    names = {c["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for c in clients}
    assert "flagger-system" in names


def test_only_the_stable_track_is_declared_and_flagger_can_select_it(prod: Simulation) -> None:
    deployments = {
        d.inputs["metadata"]["name"]: d.inputs["spec"]
        for d in prod.of_type("kubernetes:apps/v1:Deployment")
        if d.inputs["metadata"]["name"].startswith("agent-")
    }
    assert set(deployments) == {"agent-api", "agent-worker"}
    for name, spec in deployments.items():
        assert spec["selector"]["matchLabels"][WORKLOAD_LABEL] == name
        assert spec["template"]["metadata"]["labels"][WORKLOAD_LABEL] == name
    # The PDBs count the primary's pods and the canary's: not by the rewritten label.
    for pdb in prod.of_type("kubernetes:policy/v1:PodDisruptionBudget"):
        assert WORKLOAD_LABEL not in pdb.inputs["spec"]["selector"]["matchLabels"]


def test_a_manual_canary_and_flagger_exclude_each_other() -> None:
    (problem,) = prod_problems(canary={"version": "1.5.0", "imageTag": "1.5.0", "weight": 10})
    assert problem.startswith("agent-platform:canary: progressiveDelivery.enabled releases")


def test_flagger_needs_its_operator_and_the_gateway() -> None:
    raw, _ = stack_file_config("prod")
    operators = json.loads(raw["agent-platform:operators"])
    del operators["flagger"]
    assert prod_problems(operators=operators) == [
        "agent-platform:progressiveDelivery.enabled: needs operators.flagger.enabled: true"
    ]
    assert (
        "agent-platform:progressiveDelivery.enabled: Flagger steps the Gateway's weights: "
        "needs gateway.enabled: true" in prod_problems(gateway={"enabled": False})
    )


def test_steps_above_the_ceiling_are_refused() -> None:
    (problem,) = prod_problems(progressiveDelivery={"enabled": True, "stepWeight": 60})
    assert problem.startswith("agent-platform:progressiveDelivery")
    assert "stepWeight (60) is above maxWeight (50)" in problem


def test_skip_analysis_is_the_manual_promotion() -> None:
    from stacks.simulate import simulate

    sim = simulate(
        "prod",
        overrides={"agent-platform:progressiveDelivery": {"enabled": True, "skipAnalysis": True}},
    )
    assert {c.inputs["spec"]["skipAnalysis"] for c in sim.of_type(CANARY)} == {True}
