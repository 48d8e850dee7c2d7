"""EksCluster: encrypted Secrets, control-plane logs, OIDC, a system node group and a
Kubernetes provider from its kubeconfig."""

from __future__ import annotations

import json
import re

import pytest
from component_mocks import evaluate, priced_both_ways
from pulumi.runtime.rpc import is_rpc_secret, unwrap_rpc_secret

from components.eks_cluster import VPC_CNI_VERSION, EksCluster, EksClusterArgs
from components.values import Scaling

EKS = "agent-platform:cluster:EksCluster"
KEY = "arn:aws:kms:us-east-1:123456789012:key/stack"
DEPLOYER = "arn:aws:iam::123456789012:role/agent-platform-deploy"


def _args(**overrides: object) -> EksClusterArgs:
    values: dict[str, object] = {
        "region": "us-east-1",
        "kubernetes_version": "1.31",
        "private_subnet_ids": ["subnet-a", "subnet-b"],
        "public_subnet_ids": ["subnet-c"],
        "private_endpoint": True,
        "system_instance_type": "m6i.large",
        "system_scaling": Scaling(min_size=2, desired_size=2, max_size=4),
        "logs_key_arn": KEY,
        "log_retention_days": 365,
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
    # No CIDRs by default: a public endpoint open to the world is never implied.
    with pytest.raises(ValueError, match="a public endpoint needs at least one public_access"):
        _args(private_endpoint=False)
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


def test_the_control_plane_logs_are_encrypted_and_every_key_has_an_explicit_policy() -> None:
    _, graph = evaluate(lambda: EksCluster("agents-prod", _args()))
    logs = graph.named("aws:cloudwatch/logGroup:LogGroup", "agents-prod-control-plane").inputs
    assert logs["kmsKeyId"] == KEY
    assert logs["retentionInDays"] == 365
    key = graph.named("aws:kms/key:Key", "agents-prod-secrets").inputs
    assert key["enableKeyRotation"] is True
    [statement] = json.loads(key["policy"])["Statement"]
    assert statement["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}


def test_access_entries_replace_the_creators_permanent_admin() -> None:
    extra = "arn:aws:iam::123456789012:role/platform-oncall"
    # The deployer listed again gets one entry, not a conflicting second one.
    args = _args(admin_principal_arns=[extra, DEPLOYER])
    _, graph = evaluate(lambda: EksCluster("agents-prod", args))
    cluster = graph.named("aws:eks/cluster:Cluster", "agents-prod").inputs
    assert cluster["accessConfig"] == {
        "authenticationMode": "API",
        "bootstrapClusterCreatorAdminPermissions": False,
    }
    entries = sorted(
        r.inputs["principalArn"] for r in graph.of_type("aws:eks/accessEntry:AccessEntry")
    )
    assert entries == [DEPLOYER, extra]
    associations = graph.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert sorted(a.inputs["principalArn"] for a in associations) == entries
    for association in associations:
        assert association.inputs["policyArn"] == (
            "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
        )
        assert association.inputs["accessScope"] == {"type": "cluster"}


def test_network_policies_are_enforced_by_the_pinned_vpc_cni_add_on() -> None:
    _, graph = evaluate(lambda: EksCluster("agents-prod", _args()))
    (addon,) = graph.of_type("aws:eks/addon:Addon")
    assert addon.inputs["addonName"] == "vpc-cni"
    assert addon.inputs["clusterName"] == "agents-prod"
    assert addon.inputs["addonVersion"] == VPC_CNI_VERSION
    assert re.fullmatch(r"v\d+\.\d+\.\d+-eksbuild\.\d+", VPC_CNI_VERSION)
    assert json.loads(addon.inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}


def test_the_system_pool_starts_from_a_template_requiring_imdsv2() -> None:
    _, graph = evaluate(lambda: EksCluster("agents-prod", _args()))
    system = graph.named("aws:eks/nodeGroup:NodeGroup", "agents-prod-system").inputs
    assert system["amiType"] == "AL2023_x86_64_STANDARD"
    assert system["launchTemplate"] == {"id": "agents-prod-system-id", "version": "1"}
    template = graph.named("aws:ec2/launchTemplate:LaunchTemplate", "agents-prod-system").inputs
    assert template["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
    }
    [root] = template["blockDeviceMappings"]
    assert root["ebs"]["encrypted"] == "true"
    # EKS supplies the AMI for the node group's amiType.
    assert "imageId" not in template
