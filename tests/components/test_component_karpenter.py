"""Karpenter: the controller (chart, IRSA role) and GPU pools as NodePools that follow
the pods, within limits taken from the pool's maxSize."""

from __future__ import annotations

import json
from typing import Any

import pytest
from component_mocks import Graph, evaluate, priced_both_ways, provider

from components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs, GpuPoolConfig, KarpenterNodes
from components.karpenter import Karpenter, KarpenterArgs, KarpenterConfig
from components.values import Scaling
from costing.pricing import price

KARPENTER = "agent-platform:cluster:Karpenter"
POOL = "agent-platform:gpu:GpuNodePool"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_ROLE = "arn:aws:iam::123456789012:role/agents-dev-nodes"


def _controller() -> Karpenter:
    return Karpenter(
        "karpenter",
        KarpenterArgs(
            config=KarpenterConfig(enabled=True, chart_version="1.13.1"),
            cluster_name="agents-dev",
            oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/sim",
            oidc_issuer="https://oidc.eks.us-east-1.amazonaws.com/id/SIM",
            node_role_arn=NODE_ROLE,
            provider=provider(),
        ),
    )


def test_the_controller_is_the_pinned_chart_with_its_own_role_on_the_system_pool() -> None:
    _, graph = evaluate(_controller)
    component = graph.component(KARPENTER)
    release = graph.named(RELEASE, "karpenter").inputs
    assert (release["chart"], release["version"]) == (
        "oci://public.ecr.aws/karpenter/karpenter",
        "1.13.1",
    )
    assert release["namespace"] == "karpenter"
    values = release["values"]
    assert values["settings"]["clusterName"] == "agents-dev"
    # Never on a node it manages: the managed system pool only.
    assert values["nodeSelector"] == {"agent-platform.io/node-pool": "system"}
    role_arn = values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role_arn.endswith(":karpenter-identity-role")
    assert graph.outputs_of(component)["roleArn"] == role_arn

    role = graph.named("aws:iam/role:Role", "karpenter-identity-role").inputs
    (trust,) = json.loads(role["assumeRolePolicy"])["Statement"]
    assert (
        trust["Condition"]["StringEquals"]["oidc.eks.us-east-1.amazonaws.com/id/SIM:sub"]
        == "system:serviceaccount:karpenter:karpenter"
    )
    policy = json.loads(
        graph.named("aws:iam/rolePolicy:RolePolicy", "karpenter-identity-policy").inputs["policy"]
    )
    statements = {s["Sid"]: s for s in policy["Statement"]}
    # It creates instances only tagged for this cluster, terminates only those, and may
    # pass only the nodes' role.
    assert statements["LaunchOnlyTaggedForThisCluster"]["Condition"] == {
        "StringEquals": {"aws:RequestTag/kubernetes.io/cluster/agents-dev": "owned"}
    }
    assert statements["PassOnlyTheNodeRole"]["Resource"] == NODE_ROLE
    assert statements["TerminateOnlyThisClustersNodes"]["Condition"] == {
        "StringEquals": {"aws:ResourceTag/kubernetes.io/cluster/agents-dev": "owned"}
    }
    assert statements["DescribeThisCluster"]["Resource"] == "arn:aws:eks:*:*:cluster/agents-dev"
    # Only listing, which names no resource, is allowed on "*" without a condition
    # (checkov CKV_AWS_355).
    unrestricted = [
        s["Action"] for s in policy["Statement"] if s["Resource"] == "*" and "Condition" not in s
    ]
    assert all(
        a.startswith(("ec2:Describe", "pricing:", "iam:List")) for a in _actions(unrestricted)
    )
    assert statements["ReadInstanceProfiles"]["Resource"] == "arn:aws:iam::*:instance-profile/*"
    # Its namespace has a default-deny ingress policy, metrics excepted.
    netpol = graph.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", "karpenter-ingress")
    assert netpol.inputs["metadata"]["namespace"] == "karpenter"
    assert netpol.inputs["spec"]["podSelector"] == {}
    assert netpol.inputs["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]


def _pool(**overrides: object) -> GpuPoolConfig:
    values: dict[str, object] = {
        "name": "inference",
        "instance_types": ["g5.2xlarge", "g5.xlarge", "g6.xlarge"],
        "capacity_type": "SPOT",
        "scaling": Scaling(min_size=0, desired_size=1, max_size=3),
    }
    return GpuPoolConfig.model_validate({**values, **overrides})


def _karpenter_pool(pool: GpuPoolConfig, expected_gpus: int = 0) -> tuple[GpuNodePool, Graph]:
    def program() -> GpuNodePool:
        controller = _controller()
        return GpuNodePool(
            "gpu-inference",
            GpuNodePoolArgs(
                pool=pool,
                nodes=KarpenterNodes(
                    cluster_name="agents-dev",
                    node_role_name="agents-dev-nodes",
                    subnet_ids=["subnet-a", "subnet-b"],
                    security_group_ids=["sg-cluster"],
                    ami_alias="al2023@v20250915",
                    consolidate_after="10m",
                    release=controller.release,
                ),
                system_namespace="gpu-system",
                provider=provider(),
                expected_gpus=expected_gpus,
            ),
        )

    return evaluate(program)


def _actions(actions: list[str | list[str]]) -> list[str]:
    return [a for item in actions for a in ([item] if isinstance(item, str) else item)]


def test_the_pool_is_a_node_pool_and_node_class_instead_of_a_node_group() -> None:
    pool = _pool()
    component, graph = _karpenter_pool(pool)
    assert graph.kinds(graph.component(POOL)) == [
        ("kubernetes:apps/v1:DaemonSet", "gpu-inference-dcgm-exporter"),
        ("kubernetes:apps/v1:DaemonSet", "gpu-inference-device-plugin"),
        (NODE_CLASS, "gpu-inference-node-class"),
        (NODE_POOL, "gpu-inference-node-pool"),
    ]
    assert not graph.of_type("aws:eks/nodeGroup:NodeGroup")

    spec: dict[str, Any] = graph.named(NODE_POOL, "gpu-inference-node-pool").inputs["spec"]
    template = spec["template"]
    # The labels and taint the GPU workloads select and tolerate, from the pool config.
    assert template["metadata"]["labels"] == pool.node_labels()
    assert template["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
    ]
    requirements = {
        r["key"]: (r["operator"], r["values"]) for r in template["spec"]["requirements"]
    }
    assert requirements == {
        "karpenter.k8s.aws/instance-family": ("In", ["g5", "g6"]),
        "node.kubernetes.io/instance-type": ("In", ["g5.2xlarge", "g5.xlarge", "g6.xlarge"]),
        "karpenter.sh/capacity-type": ("In", ["spot"]),
    }
    # maxSize 3 of the largest type (g5.2xlarge: 1 GPU, 8 vCPUs).
    assert spec["limits"] == {"nvidia.com/gpu": "3", "cpu": "24"}
    assert spec["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"
    assert spec["disruption"]["consolidateAfter"] == "10m"

    node_class = graph.named(NODE_CLASS, "gpu-inference-node-class").inputs
    assert template["spec"]["nodeClassRef"] == {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": node_class["metadata"]["name"],
    }
    assert node_class["spec"]["role"] == "agents-dev-nodes"
    assert node_class["spec"]["amiSelectorTerms"] == [{"alias": "al2023@v20250915"}]
    assert node_class["spec"]["subnetSelectorTerms"] == [{"id": "subnet-a"}, {"id": "subnet-b"}]
    assert node_class["spec"]["securityGroupSelectorTerms"] == [{"id": "sg-cluster"}]
    assert node_class["spec"]["metadataOptions"]["httpTokens"] == "required"
    assert component.max_gpus == 3


def test_a_pool_of_four_gpu_nodes_is_limited_in_gpus_of_its_largest_type() -> None:
    pool = _pool(
        instance_types=["g5.xlarge", "g5.12xlarge"],
        scaling=Scaling(min_size=0, desired_size=0, max_size=2),
    )
    _, graph = _karpenter_pool(pool)
    spec = graph.named(NODE_POOL, "gpu-inference-node-pool").inputs["spec"]
    assert spec["limits"] == {"nvidia.com/gpu": "8", "cpu": "96"}


@pytest.mark.parametrize("capacity", ["SPOT", "ON_DEMAND"])
def test_the_bill_is_the_node_pool_at_its_limits(capacity: str) -> None:
    pool, graph = _karpenter_pool(_pool(capacity_type=capacity))
    declared, registered = priced_both_ways(pool.bill, graph)
    assert declared == registered
    [line] = [i for i in declared["items"] if i["item"].startswith("Karpenter")]
    assert line["item"] == (
        "Karpenter NodePool 'gpu-inference' (g5.2xlarge at limits cpu=24, nvidia.com/gpu=3, "
        f"{capacity})"
    )
    # No GPU workload holds a node at rest here; the stack tests hold the LLM's demand
    # as declared equal to the pack's reading of its Deployment.
    assert (line["quantity"], line["worst_quantity"]) == (0, 3)


@pytest.mark.parametrize(("expected_gpus", "at_rest"), [(2, 2), (9, 3)])
def test_the_pools_size_at_rest_is_the_gpus_held_within_its_limits(
    expected_gpus: int, at_rest: int
) -> None:
    pool, _ = _karpenter_pool(_pool(), expected_gpus=expected_gpus)
    [line] = price(pool.bill).items
    assert (line.quantity, line.worst_quantity) == (at_rest, 3)
