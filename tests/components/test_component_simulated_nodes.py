"""SimulatedNodes: the local control plane's pools as Node objects KWOK keeps Ready."""

from __future__ import annotations

import json

import pytest
from component_mocks import evaluate, provider

from components.simulated_nodes import SimulatedNodes, SimulatedNodesArgs, SimulatedPool, Taint

NODES = "agent-platform:cluster:SimulatedNodes"
NODE = "kubernetes:core/v1:Node"


def _pools() -> list[SimulatedPool]:
    return [
        SimulatedPool(
            name="system",
            count=3,
            zones=["local-a", "local-b"],
            capacity={"cpu": "4", "memory": "16Gi", "ephemeral-storage": "100Gi"},
        ),
        SimulatedPool(
            name="gpu",
            count=1,
            zones=["local-a"],
            capacity={"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
            labels={"nvidia.com/gpu.present": "true"},
            taints=[Taint(key="nvidia.com/gpu", value="true", effect="NoSchedule")],
        ),
    ]


def test_each_pool_becomes_nodes_spread_over_its_zones_with_its_capacity() -> None:
    _, graph = evaluate(
        lambda: SimulatedNodes("local", SimulatedNodesArgs(pools=_pools(), provider=provider()))
    )
    parent = graph.component(NODES)
    assert graph.kinds(parent) == [
        (NODE, f"{p}") for p in ("gpu-0", "system-0", "system-1", "system-2")
    ]
    zones = [graph.named(NODE, f"system-{i}").inputs["metadata"]["labels"] for i in range(3)]
    assert [z["topology.kubernetes.io/zone"] for z in zones] == ["local-a", "local-b", "local-a"]
    assert {z["agent-platform.io/node-pool"] for z in zones} == {"system"}
    gpu = graph.named(NODE, "gpu-0").inputs
    assert gpu["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    annotations = gpu["metadata"]["annotations"]
    assert annotations["kwok.x-k8s.io/node"] == "fake"
    assert json.loads(annotations["kwok.agent-platform.io/capacity"])["nvidia.com/gpu"] == "1"
    assert gpu["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
    ]
    assert graph.named(NODE, "system-0").inputs["spec"].get("taints") in (None, [])
    assert graph.outputs_of(parent) == {"nodeNames": ["system-0", "system-1", "system-2", "gpu-0"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"count": 0}, "count\n  Input should be greater than 0"),
        ({"zones": []}, "zones\n  List should have at least 1 item"),
        ({"capacity": {"cpu": "four"}}, "capacity.cpu"),
        ({"name": "GPU"}, "name\n  String should match pattern"),
    ],
)
def test_a_bad_pool_is_refused_naming_the_field(change: dict[str, object], message: str) -> None:
    fields = {"name": "gpu", "count": 1, "zones": ["local-a"], "capacity": {"cpu": "1"}}
    with pytest.raises(ValueError, match=message):
        SimulatedPool.model_validate({**fields, **change})
