"""GpuNodePool: a tainted managed node group, its device plugin and DCGM exporter."""

from __future__ import annotations

import pytest
from component_mocks import evaluate, priced_both_ways, provider

from components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs, GpuPoolConfig
from components.kube import GPU_POOL_NAME_LABEL
from components.values import Scaling

POOL = "agent-platform:gpu:GpuNodePool"


def _pool(**overrides: object) -> GpuPoolConfig:
    values: dict[str, object] = {
        "name": "inference",
        "instance_types": ["g5.xlarge", "g5.2xlarge"],
        "capacity_type": "SPOT",
        "scaling": Scaling(min_size=0, desired_size=1, max_size=3),
    }
    return GpuPoolConfig.model_validate({**values, **overrides})


def test_a_tainted_node_group_with_its_device_plugin_and_exporter() -> None:
    def program() -> GpuNodePool:
        return GpuNodePool(
            "gpu-inference",
            GpuNodePoolArgs(
                pool=_pool(),
                cluster_name="agents-dev",
                node_role_arn="arn:aws:iam::123456789012:role/nodes",
                subnet_ids=["subnet-a"],
                system_namespace="gpu-system",
                provider=provider(),
            ),
        )

    pool, graph = evaluate(program)
    component = graph.component(POOL)
    assert graph.kinds(component) == [
        ("aws:eks/nodeGroup:NodeGroup", "gpu-inference-nodes"),
        ("kubernetes:apps/v1:DaemonSet", "gpu-inference-dcgm-exporter"),
        ("kubernetes:apps/v1:DaemonSet", "gpu-inference-device-plugin"),
    ]
    nodes = graph.named("aws:eks/nodeGroup:NodeGroup", "gpu-inference-nodes").inputs
    assert nodes["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert nodes["capacityType"] == "SPOT"
    assert nodes["labels"][GPU_POOL_NAME_LABEL] == "inference"
    for daemon in graph.of_type("kubernetes:apps/v1:DaemonSet"):
        pod = daemon.inputs["spec"]["template"]["spec"]
        assert daemon.inputs["metadata"]["namespace"] == "gpu-system"
        # Only this pool's nodes, despite their taint.
        assert pod["nodeSelector"] == {GPU_POOL_NAME_LABEL: "inference"}
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    # g5.2xlarge carries one GPU, like g5.xlarge: 3 nodes at most.
    assert pool.max_gpus == 3
    assert graph.outputs_of(component)["maxGpus"] == 3


def test_the_pool_refuses_unknown_instance_types_and_no_subnets() -> None:
    with pytest.raises(ValueError, match=r"unknown GPU instance type\(s\) \['g9.mega'\]"):
        _pool(instance_types=["g9.mega"])
    k8s_provider, _ = evaluate(provider)
    with pytest.raises(ValueError, match=r"subnet_ids\n  Value should have at least 1 item"):
        GpuNodePoolArgs(
            pool=_pool(),
            cluster_name="c",
            node_role_arn="arn",
            subnet_ids=[],
            system_namespace="gpu-system",
            provider=k8s_provider,
        )


@pytest.mark.parametrize("capacity", ["SPOT", "ON_DEMAND"])
def test_the_bill_is_the_node_group_at_its_dearest_type(capacity: str) -> None:
    def program() -> GpuNodePool:
        return GpuNodePool(
            "gpu-inference",
            GpuNodePoolArgs(
                pool=_pool(capacity_type=capacity),
                cluster_name="agents-dev",
                node_role_arn="arn:aws:iam::123456789012:role/nodes",
                subnet_ids=["subnet-a"],
                system_namespace="gpu-system",
                provider=provider(),
            ),
        )

    pool, graph = evaluate(program)
    declared, registered = priced_both_ways(pool.bill, graph)
    assert declared == registered
    [node_group] = [i for i in declared["items"] if i["item"].startswith("Node group")]
    assert node_group["item"] == (
        f"Node group 'gpu-inference-nodes' (g5.xlarge/g5.2xlarge, {capacity})"
    )
    assert (node_group["quantity"], node_group["worst_quantity"]) == (1, 3)
