"""The pack over our own stacks, under mocks: no false positives, real catches."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from costing.model import estimate
from costing.view import ResourceView
from policies.catalog import RULES
from policies.cost import main as cost_main
from policies.harness import Report, evaluate, run_stack, simulated_views, views_of
from policies.harness import main as harness_main
from policies.pack_config import configure, load_raw
from policies.rules.scaling import BoundsConfig, check_autoscaler_bounds
from stacks.simulate import Simulation, simulate, stack_file_config

STACKS = ["local", "dev", "prod"]


def views(stack: str, preview: bool = False) -> tuple[ResourceView, ...]:
    return tuple(views_of(simulated(stack, preview)))


@cache
def simulated(stack: str, preview: bool) -> Simulation:
    # Each simulation runs the whole program: share them across tests.
    return simulate(stack, preview=preview)


def run(stack: str, preview: bool = False, config: dict[str, object] | None = None) -> Report:
    raw = {**load_raw(stack), **(config or {})}
    return evaluate(views(stack, preview), configure(RULES, raw))


@pytest.mark.parametrize("stack", STACKS)
def test_stack_passes_every_mandatory_rule(stack: str) -> None:
    report = run(stack)
    assert report.mandatory == [], report.render()


@pytest.mark.parametrize("stack", STACKS)
def test_stack_has_no_undecided_checks_after_an_update(stack: str) -> None:
    assert run(stack).undetermined == [], run(stack).render()


@pytest.mark.parametrize("stack", STACKS)
def test_preview_passes_every_mandatory_rule(stack: str) -> None:
    # Unknowns at preview must neither crash a rule nor fail one that can wait for them
    # (prod pins images by tags known at preview, so image-pinned can decide).
    report = run(stack, preview=True)
    assert report.mandatory == [], report.render()


def test_prod_over_budget_is_caught_with_the_breakdown() -> None:
    cost = estimate(views("prod"))
    budget = {"enforcementLevel": "mandatory", "monthly_budget_usd": cost.expected_total / 2}
    report = run("prod", config={"monthly-budget": budget})
    [violation] = [v for v in report.mandatory if v.rule == "monthly-budget"]
    assert violation.resource == "stack"
    assert "exceeds monthly_budget_usd" in violation.message
    lines = violation.message.split("\n")[2:]
    assert lines == [f"  - {item.line()}" for item in cost.items]
    assert any(line.startswith("  - EKS control plane") for line in lines)
    assert any("Karpenter NodePool" in line and "g5.2xlarge" in line for line in lines)


@pytest.mark.parametrize("stack", STACKS)
def test_the_stack_output_uses_the_same_cost_model(stack: str) -> None:
    output = simulated(stack, False).outputs["estimatedMonthlyCost"]
    cost = estimate(views(stack))
    assert output["expectedUsd"] == pytest.approx(cost.expected_total, abs=0.01)
    assert output["worstCaseUsd"] == pytest.approx(cost.worst_total, abs=0.01)
    assert output["unpriced"] == []


def test_prod_costs_something_and_local_nothing() -> None:
    assert estimate(views("prod")).expected_total > 1000
    assert estimate(views("prod")).worst_total >= estimate(views("prod")).expected_total
    assert estimate(views("local")).items == []


@pytest.fixture
def cached_simulations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands simulate through `simulated_views`; serve them the shared runs."""
    monkeypatch.setattr(
        "policies.harness.simulated_views",
        lambda stack, *, preview=False, overrides=None: list(views(stack, preview)),
    )


@pytest.mark.usefixtures("cached_simulations")
def test_harness_command_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert harness_main(["--stack", "local"]) == 0
    assert "policy pack passed" in capsys.readouterr().out
    tight = tmp_path / "tight.json"
    tight.write_text(json.dumps({"autoscaler-bounds": {"max_replicas": 1}}))
    assert harness_main(["--stack", "local", "--config", str(tight)]) == 1
    out = capsys.readouterr().out
    assert "MANDATORY [autoscaler-bounds] HorizontalPodAutoscaler 'agent-api'" in out
    assert "policy pack FAILED" in out


@pytest.mark.parametrize(
    ("karpenter", "line", "counted"),
    [
        (
            True,
            "Karpenter NodePool 'gpu-gpu' (g5.12xlarge at limits cpu=192, nvidia.com/gpu=16, "
            "ON_DEMAND): 1 nodes x $4,140.56 = $4,140.56 (worst case 4 = $16,562.24)",
            "NodePool 'gpu-gpu' at spec.limits 4 x g5.12xlarge = 16",
        ),
        (
            False,
            "Node group 'gpu-gpu-nodes' (g5.12xlarge, ON_DEMAND): 2 nodes x $4,140.56",
            "NodeGroup 'gpu-gpu-nodes' 4 x 4 = 16",
        ),
    ],
)
def test_a_bigger_gpu_pool_puts_prod_over_budget_and_over_the_gpu_cap(
    karpenter: bool, line: str, counted: str
) -> None:
    pools = [
        {
            "name": "gpu",
            "instanceTypes": ["g5.12xlarge"],
            "capacityType": "ON_DEMAND",
            "scaling": {"minSize": 1, "desiredSize": 2, "maxSize": 4},
        }
    ]
    overrides = {
        "agent-platform:gpuPools": pools,
        "agent-platform:karpenter": {"enabled": karpenter},
    }
    grown = simulated_views("prod", overrides=overrides)
    report = evaluate(grown, configure(RULES, load_raw("prod")))
    by_rule = {v.rule: v for v in report.mandatory}
    assert "estimated cost (expected $" in by_rule["monthly-budget"].message
    assert line in by_rule["monthly-budget"].message
    assert by_rule["gpu-node-pool-capacity"].message.endswith(
        f"total 16 GPUs, above the cap 8 (max_total_gpus): {counted}. Lower "
        "scalingConfig.maxSize or the NodePool's spec.limits, or raise max_total_gpus in the "
        "stack's policy config."
    )


@pytest.mark.usefixtures("cached_simulations")
def test_cost_command_prints_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost_main(["--stack", "prod"]) == 0
    table = capsys.readouterr().out
    total = estimate(views("prod"))
    assert f"${total.expected_total:,.2f}" in table
    # The GPU pool at its limits, and the chain's workloads at their autoscalers' maxima.
    assert "Karpenter NodePool 'gpu-gpu' (g5.2xlarge at limits cpu=32, nvidia.com/gpu=4" in table
    maxima = table.split("At the autoscalers' maxima (priced through the nodes above):\n")[1]
    assert (
        "  - Deployment 'llm' at max 4 replicas (at rest 1): 8 vCPU, 48 GiB requested, 4 GPU(s)"
        in maxima
    )
    assert (
        "  - Deployment 'agent-worker' at max 20 replicas (at rest 3): 10 vCPU, 10 GiB requested"
        in maxima
    )
    assert cost_main(["--stack", "prod", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stack"] == "prod"
    assert data["expected_monthly_usd"] == pytest.approx(total.expected_total, abs=0.01)
    assert [line for line in data["at_max"] if "'llm'" in line] == [
        "Deployment 'llm' at max 4 replicas (at rest 1): 8 vCPU, 48 GiB requested, 4 GPU(s)"
    ]


def test_more_llm_replicas_than_the_gpu_pool_holds_fail_the_gpu_rule() -> None:
    # The stack config refuses this (llm.autoscaling.maxReplicas beyond the pools); the
    # pack holds any program to it: prod's resources with vLLM's ceiling raised to 6.
    grown = [
        ResourceView(
            v.type,
            v.name,
            v.urn,
            {**v.props, "spec": {**v.props["spec"], "maxReplicaCount": 6}},
        )
        if v.name == "llm-scaledobject"
        else v
        for v in views("prod")
    ]
    report = evaluate(grown, configure(RULES, load_raw("prod")))
    [found] = [v for v in report.mandatory if v.rule == "gpu-node-pool-capacity"]
    assert found.message.startswith(
        "Deployment 'llm': GPU workloads at their autoscalers' maxima hold 6 GPUs "
        "(Deployment 'llm' at max 6 replicas x 1 = 6), more than the GPU node pools admit (4)"
    )


def test_prods_vllm_scaled_object_without_a_max_fails_the_bounds_rule() -> None:
    (scaled,) = [
        v
        for v in views("prod")
        if v.type == "kubernetes:keda.sh/v1alpha1:ScaledObject" and v.name == "llm-scaledobject"
    ]
    # As prod declares it: bounded by llm.autoscaling.maxReplicas.
    assert check_autoscaler_bounds(scaled, BoundsConfig(max_replicas=20)) == []
    spec = {k: v for k, v in scaled.props["spec"].items() if k != "maxReplicaCount"}
    unbounded = ResourceView(scaled.type, scaled.name, scaled.urn, {**scaled.props, "spec": spec})
    (found,) = check_autoscaler_bounds(unbounded, BoundsConfig(max_replicas=20))
    assert "spec.maxReplicaCount is 100, above the cap 20" in found.message


DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_prod_reports_each_third_party_image_until_it_is_pinned_by_digest() -> None:
    # Advisory in prod until every digest is filled in: the stack file pins Prometheus and
    # the device plugin; vLLM's and the DCGM exporter's are still tags.
    flagged = sorted(
        v.message.split("'")[5]
        for v in run("prod").advisory
        if v.rule == "third-party-image-digest"
    )
    assert flagged == [
        "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.9-3.6.1-ubuntu22.04",
        "vllm/vllm-openai:v0.34.0",
        "vllm/vllm-openai:v0.34.0",
    ]


def test_prod_with_its_images_configured_by_digest_passes_the_rule_as_mandatory() -> None:
    raw, _ = stack_file_config("prod")

    def section(name: str) -> Any:
        return json.loads(raw[f"agent-platform:{name}"])

    overrides = {
        "agent-platform:llm": {
            **section("llm"),
            "vllmImage": f"vllm/vllm-openai:v0.34.0@{DIGEST}",
        },
        "agent-platform:monitoring": {
            **section("monitoring"),
            "prometheusImage": f"prom/prometheus:v2.55.1@{DIGEST}",
        },
        "agent-platform:gpuPools": [
            {
                **pool,
                "devicePluginImage": f"nvcr.io/nvidia/k8s-device-plugin:v0.17.0@{DIGEST}",
                "dcgmExporterImage": f"nvcr.io/nvidia/k8s/dcgm-exporter:3.3.9@{DIGEST}",
            }
            for pool in section("gpuPools")
        ],
    }
    policy = {**load_raw("prod"), "third-party-image-digest": "mandatory"}
    report = run_stack("prod", raw_config=policy, overrides=overrides)
    assert report.mandatory == [], report.render()
    assert not [v for v in report.advisory if v.rule == "third-party-image-digest"]
