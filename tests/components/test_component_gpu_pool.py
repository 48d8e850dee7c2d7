"""GpuNodePool: a tainted managed node group, its device plugin and DCGM exporter."""

from __future__ import annotations

import json

import pytest
from component_mocks import evaluate, priced_both_ways, provider

from components.gpu_node_pool import (
    EksNodeGroup,
    GpuNodePool,
    GpuNodePoolArgs,
    GpuPoolConfig,
    SimulatedNodeGroup,
)
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
                nodes=EksNodeGroup(
                    cluster_name="agents-dev",
                    node_role_arn="arn:aws:iam::123456789012:role/nodes",
                    subnet_ids=["subnet-a"],
                ),
                system_namespace="gpu-system",
                provider=provider(),
            ),
        )

    pool, graph = evaluate(program)
    component = graph.component(POOL)
    assert graph.kinds(component) == [
        ("aws:ec2/launchTemplate:LaunchTemplate", "gpu-inference-nodes"),
        ("aws:eks/nodeGroup:NodeGroup", "gpu-inference-nodes"),
        ("kubernetes:apps/v1:DaemonSet", "gpu-inference-dcgm-exporter"),
        ("kubernetes:apps/v1:DaemonSet", "gpu-inference-device-plugin"),
    ]
    nodes = graph.named("aws:eks/nodeGroup:NodeGroup", "gpu-inference-nodes").inputs
    assert nodes["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert nodes["capacityType"] == "SPOT"
    assert nodes["labels"][GPU_POOL_NAME_LABEL] == "inference"
    # Started from the hardened template: IMDSv2 only, hop limit 1, encrypted root.
    assert nodes["launchTemplate"] == {"id": "gpu-inference-nodes-id", "version": "1"}
    template = graph.named("aws:ec2/launchTemplate:LaunchTemplate", "gpu-inference-nodes").inputs
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert [m["ebs"]["encrypted"] for m in template["blockDeviceMappings"]] == ["true"]
    for daemon in graph.of_type("kubernetes:apps/v1:DaemonSet"):
        pod = daemon.inputs["spec"]["template"]["spec"]
        assert daemon.inputs["metadata"]["namespace"] == "gpu-system"
        # Only this pool's nodes, despite their taint.
        assert pod["nodeSelector"] == {GPU_POOL_NAME_LABEL: "inference"}
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        # A pod-level security context as well as the containers' (checkov CKV_K8S_29).
        assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    # g5.2xlarge carries one GPU, like g5.xlarge: 3 nodes at most.
    assert pool.max_gpus == 3
    assert graph.outputs_of(component)["maxGpus"] == 3


DIGEST = "sha256:" + "ab" * 32


def test_the_pools_images_are_configurable_by_digest() -> None:
    plugin = f"nvcr.io/nvidia/k8s-device-plugin:v0.17.0@{DIGEST}"
    exporter = f"nvcr.io/nvidia/k8s/dcgm-exporter:3.3.9-3.6.1-ubuntu22.04@{DIGEST}"

    def program() -> GpuNodePool:
        return GpuNodePool(
            "gpu-inference",
            GpuNodePoolArgs(
                pool=_pool(device_plugin_image=plugin, dcgm_exporter_image=exporter),
                nodes=SimulatedNodeGroup(zones=["zone-a"]),
                system_namespace="gpu-system",
                provider=provider(),
            ),
        )

    _, graph = evaluate(program)
    images = {
        d.name: d.inputs["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in graph.of_type("kubernetes:apps/v1:DaemonSet")
    }
    assert images == {
        "gpu-inference-device-plugin": plugin,
        "gpu-inference-dcgm-exporter": exporter,
    }


@pytest.mark.parametrize(
    ("image", "error"),
    [
        ("nvcr.io/nvidia/k8s-device-plugin:v0.17.0@sha256:abc", "is not `sha256:` and 64"),
        ("nvcr.io/nvidia/k8s-device-plugin:v0.17.0@" + "ab" * 32, "is not `sha256:` and 64"),
        ("nvcr.io/nvidia/k8s-device-plugin v0.17.0", "has no spaces"),
    ],
)
def test_a_malformed_image_reference_is_refused_by_its_key(image: str, error: str) -> None:
    with pytest.raises(ValueError, match=f"device_plugin_image\n  Value error, .*{error}"):
        _pool(device_plugin_image=image)


def test_the_pool_refuses_unknown_instance_types_and_no_subnets() -> None:
    with pytest.raises(ValueError, match=r"unknown GPU instance type\(s\) \['g9.mega'\]"):
        _pool(instance_types=["g9.mega"])
    with pytest.raises(ValueError, match=r"subnet_ids\n  Value should have at least 1 item"):
        EksNodeGroup(cluster_name="c", node_role_arn="arn", subnet_ids=[])


def test_the_local_pool_is_simulated_nodes_shaped_like_its_instances() -> None:
    def program() -> GpuNodePool:
        return GpuNodePool(
            "gpu-inference",
            GpuNodePoolArgs(
                pool=_pool(scaling=Scaling(min_size=0, desired_size=2, max_size=3)),
                nodes=SimulatedNodeGroup(zones=["local-a", "local-b"]),
                system_namespace="gpu-system",
                provider=provider(),
            ),
        )

    pool, graph = evaluate(program)
    # No AWS node group: two Node objects instead, and the same node agents.
    assert not graph.of_type("aws:eks/nodeGroup:NodeGroup")
    assert len(graph.of_type("kubernetes:apps/v1:DaemonSet")) == 2
    nodes = sorted(graph.of_type("kubernetes:core/v1:Node"), key=lambda n: n.name)
    assert [n.inputs["metadata"]["name"] for n in nodes] == ["gpu-inference-0", "gpu-inference-1"]
    for node, zone in zip(nodes, ["local-a", "local-b"], strict=True):
        meta = node.inputs["metadata"]
        # The labels and taint an EKS node of this pool gets, from the same pool config.
        assert meta["labels"] | _pool().node_labels() == meta["labels"]
        assert meta["labels"]["agent-platform.io/node-pool"] == "gpu"
        assert meta["labels"]["topology.kubernetes.io/zone"] == zone
        assert node.inputs["spec"]["taints"] == [
            {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
        ]
        # The first instance type's machine: g5.xlarge, 4 vCPUs, 16 GiB and one A10G.
        capacity = json.loads(meta["annotations"]["kwok.agent-platform.io/capacity"])
        assert capacity["nvidia.com/gpu"] == "1"
        assert (capacity["cpu"], capacity["memory"]) == ("4", "16Gi")
    assert graph.outputs_of(graph.component(POOL))["nodeGroupName"] == "gpu-inference"
    assert pool.max_gpus == 3


@pytest.mark.parametrize("capacity", ["SPOT", "ON_DEMAND"])
def test_the_bill_is_the_node_group_at_its_dearest_type(capacity: str) -> None:
    def program() -> GpuNodePool:
        return GpuNodePool(
            "gpu-inference",
            GpuNodePoolArgs(
                pool=_pool(capacity_type=capacity),
                nodes=EksNodeGroup(
                    cluster_name="agents-dev",
                    node_role_arn="arn:aws:iam::123456789012:role/nodes",
                    subnet_ids=["subnet-a"],
                ),
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


def test_prometheus_may_scrape_the_dcgm_exporter_through_the_default_deny() -> None:
    def program() -> GpuNodePool:
        return GpuNodePool(
            "gpu-inference",
            GpuNodePoolArgs(
                pool=_pool(),
                nodes=SimulatedNodeGroup(zones=["local-a"]),
                system_namespace="gpu-system",
                provider=provider(),
                prometheus_namespace="agents",
            ),
        )

    _, graph = evaluate(program)
    (policy,) = graph.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    spec = policy.inputs["spec"]
    assert policy.inputs["metadata"]["namespace"] == "gpu-system"
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "dcgm-exporter-inference"
    (rule,) = spec["ingress"]
    assert rule["from"] == [
        {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "agents"}},
        }
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9400}]
