"""EksCluster: encrypted Secrets, control-plane logs, OIDC, a system node group and a
Kubernetes provider from its kubeconfig."""

from __future__ import annotations

import json

import pytest
from component_mocks import evaluate, priced_both_ways
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from components.eks_cluster import EksCluster, EksClusterArgs
from components.values import Scaling

EKS = "agent-platform:cluster:EksCluster"


def _args(**overrides: object) -> EksClusterArgs:
    values: dict[str, object] = {
        "region": "us-east-1",
        "kubernetes_version": "1.31",
        "private_subnet_ids": ["subnet-a", "subnet-b"],
        "public_subnet_ids": ["subnet-c"],
        "private_endpoint": True,
        "system_instance_type": "m6i.large",
        "system_scaling": Scaling(min_size=2, desired_size=2, max_size=4),
    }
    return EksClusterArgs.model_validate({**values, **overrides})


def test_a_private_cluster_with_encrypted_secrets_and_a_system_pool() -> None:
    _, graph = evaluate(lambda: EksCluster("agents-prod", _args()))
    component = graph.component(EKS)
    kinds = {t for t, _ in graph.kinds(component)}
    assert {
        "aws:kms/key:Key",
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:eks/cluster:Cluster",
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        "aws:eks/nodeGroup:NodeGroup",
        "pulumi:providers:kubernetes",
    } <= kinds
    cluster = graph.named("aws:eks/cluster:Cluster", "agents-prod").inputs
    assert cluster["vpcConfig"]["endpointPublicAccess"] is False
    assert cluster["vpcConfig"]["subnetIds"] == ["subnet-a", "subnet-b", "subnet-c"]
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    system = graph.named("aws:eks/nodeGroup:NodeGroup", "agents-prod-system").inputs
    assert system["scalingConfig"] == {"minSize": 2, "desiredSize": 2, "maxSize": 4}
    assert system["subnetIds"] == ["subnet-a", "subnet-b"]
    outputs = graph.outputs_of(component)
    assert outputs["clusterName"] == "agents-prod"
    # Kept secret: the runtime hands it over as a secret-wrapped value.
    assert is_rpc_secret(outputs["kubeconfig"])
    kubeconfig = json.loads(unwrap_rpc_secret(outputs["kubeconfig"]))
    # The kubeconfig authenticates with the caller's AWS credentials; it holds no token.
    assert kubeconfig["users"][0]["user"]["exec"]["command"] == "aws"


def test_the_cluster_needs_node_subnets_and_a_reachable_endpoint() -> None:
    with pytest.raises(
        ValueError, match=r"private_subnet_ids\n  Value should have at least 1 item"
    ):
        _args(private_subnet_ids=[])
    with pytest.raises(ValueError, match="a public endpoint needs at least one public_access"):
        _args(private_endpoint=False, public_access_cidrs=[])
    with pytest.raises(ValueError, match=r"kubernetes_version\n  String should match pattern"):
        _args(kubernetes_version="v1.31")


def test_the_bill_is_the_control_plane_and_the_system_pool_from_the_args() -> None:
    cluster, graph = evaluate(lambda: EksCluster("agents-prod", _args()))
    declared, registered = priced_both_ways(cluster.bill, graph)
    assert declared == registered
    assert [(i["item"], i["quantity"], i["worst_quantity"]) for i in declared["items"]] == [
        ("EKS control plane 'agents-prod'", 1, 1),
        ("Node group 'agents-prod-system' (m6i.large, ON_DEMAND)", 2, 4),
    ]
