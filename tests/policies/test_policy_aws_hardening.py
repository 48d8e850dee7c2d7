"""The AWS hardening rules: flow logs, default SG, public endpoint CIDRs, NetworkPolicy
enforcement, node IMDSv2 and volume encryption, KMS keys, log groups, ElastiCache CMK."""

from __future__ import annotations

import json
from typing import Any

import pytest
from policy_fixtures import DELETE, only, patched, real, resource

from costing.view import UNKNOWN, ResourceView
from policies.catalog import RULES
from policies.harness import evaluate, simulated_views
from policies.pack_config import configure, load_raw
from policies.rule import NoConfig
from policies.rules.aws_encryption import (
    LogGroupConfig,
    check_elasticache_cmk,
    check_kms_key,
    check_log_group,
)
from policies.rules.aws_network import (
    EnforcementConfig,
    FlowLogConfig,
    PublicEndpointConfig,
    check_default_security_group,
    check_flow_logs,
    check_network_policy_enforced,
    check_public_endpoint,
)
from policies.rules.aws_nodes import NodeConfig, check_nodes

KEY = "arn:aws:kms:us-east-1:123456789012:key/stack"


def vpc() -> ResourceView:
    return resource("aws:ec2/vpc:Vpc", "agents-vpc", {"cidrBlock": "10.40.0.0/16"})


def flow_log(**overrides: Any) -> ResourceView:
    props: dict[str, Any] = {
        "vpcId": UNKNOWN,
        "trafficType": "ALL",
        "logDestinationType": "cloud-watch-logs",
        "logDestination": "arn:aws:logs:us-east-1:123456789012:log-group:flow",
    }
    props.update(overrides)
    return resource("aws:ec2/flowLog:FlowLog", "agents-flow-logs", props)


def default_sg(**overrides: Any) -> ResourceView:
    props: dict[str, Any] = {"vpcId": UNKNOWN, "ingress": [], "egress": []}
    props.update(overrides)
    return resource("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "agents-default", props)


def cluster(**vpc_config: Any) -> ResourceView:
    config: dict[str, Any] = {
        "endpointPrivateAccess": True,
        "endpointPublicAccess": True,
        "publicAccessCidrs": ["203.0.113.0/24"],
    }
    config.update(vpc_config)
    return resource(
        "aws:eks/cluster:Cluster", "agents-dev", {"name": "agents-dev", "vpcConfig": config}
    )


def vpc_cni(**overrides: Any) -> ResourceView:
    props: dict[str, Any] = {
        "clusterName": "agents-dev",
        "addonName": "vpc-cni",
        "addonVersion": "v1.19.2-eksbuild.1",
        "configurationValues": json.dumps({"enableNetworkPolicy": "true"}),
    }
    props.update(overrides)
    return resource("aws:eks/addon:Addon", "agents-dev-vpc-cni", props)


def launch_template(**overrides: Any) -> ResourceView:
    props: dict[str, Any] = {
        "metadataOptions": {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 1,
        },
        "blockDeviceMappings": [
            {"deviceName": "/dev/xvda", "ebs": {"encrypted": "true", "volumeSize": 20}}
        ],
    }
    props.update(overrides)
    return resource("aws:ec2/launchTemplate:LaunchTemplate", "agents-system", props)


def node_group(**overrides: Any) -> ResourceView:
    props: dict[str, Any] = {
        "instanceTypes": ["m6i.large"],
        "launchTemplate": {"id": "lt-0123", "version": "1"},
    }
    props.update(overrides)
    return resource("aws:eks/nodeGroup:NodeGroup", "agents-system", props)


def kms_key(**overrides: Any) -> ResourceView:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    props: dict[str, Any] = {"enableKeyRotation": True, "policy": json.dumps(policy)}
    props.update(overrides)
    return resource("aws:kms/key:Key", "agents-dev", props)


def log_group(**overrides: Any) -> ResourceView:
    props: dict[str, Any] = {"kmsKeyId": KEY, "retentionInDays": 14}
    props.update(overrides)
    return resource("aws:cloudwatch/logGroup:LogGroup", "agents-dev-control-plane", props)


# --- vpc-flow-logs ---------------------------------------------------------------------


def test_a_vpc_with_a_flow_log_of_all_traffic_passes() -> None:
    assert check_flow_logs([vpc(), flow_log()], FlowLogConfig()) == []


def test_a_vpc_without_flow_logs() -> None:
    found = only(check_flow_logs([vpc()], FlowLogConfig()))
    assert found.resource == "Vpc 'agents-vpc'"
    assert found.message == (
        "Vpc 'agents-vpc': the stack has 1 VPC(s) but 0 flow log(s) on a VPC; add an "
        "aws.ec2.FlowLog with vpcId for each VPC, so that traffic in and out of it can be "
        "investigated."
    )


def test_a_flow_log_of_rejected_traffic_only_or_nowhere() -> None:
    found = only(check_flow_logs([vpc(), flow_log(trafficType="REJECT")], FlowLogConfig()))
    assert found.message == (
        "FlowLog 'agents-flow-logs': trafficType is 'REJECT'; set trafficType: ALL "
        "(traffic_type in the stack's policy config)."
    )
    lost = patched(flow_log(), "logDestination", DELETE)
    assert "has no logDestination" in only(check_flow_logs([vpc(), lost], FlowLogConfig())).message


def test_a_flow_log_on_a_subnet_does_not_cover_the_vpc() -> None:
    subnet_only = patched(flow_log(subnetId="subnet-1"), "vpcId", DELETE)
    assert (
        "0 flow log(s) on a VPC"
        in only(check_flow_logs([vpc(), subnet_only], FlowLogConfig())).message
    )


# --- default-security-group-restricted -------------------------------------------------


def test_an_adopted_default_group_without_rules_passes() -> None:
    assert check_default_security_group([vpc(), default_sg()], NoConfig()) == []
    # Left out, the lists mean no rules: the provider strips what it adopts.
    bare = patched(patched(default_sg(), "ingress", DELETE), "egress", DELETE)
    assert check_default_security_group([vpc(), bare], NoConfig()) == []


def test_a_vpc_whose_default_group_is_left_to_aws() -> None:
    found = only(check_default_security_group([vpc()], NoConfig()))
    assert found.message.startswith(
        "Vpc 'agents-vpc': the stack has 1 VPC(s) but manages 0 default security group(s); "
        "AWS's default allows all traffic among its members and all egress"
    )


def test_a_default_group_with_rules() -> None:
    egress = [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]
    found = only(check_default_security_group([vpc(), default_sg(egress=egress)], NoConfig()))
    assert found.message == (
        "DefaultSecurityGroup 'agents-default': has 1 egress rule(s); set egress: [] so that "
        "nothing put in the default group by mistake can talk."
    )


# --- eks-public-endpoint-restricted ----------------------------------------------------


def test_listed_narrow_cidrs_or_a_private_endpoint_pass() -> None:
    cfg = PublicEndpointConfig()
    assert check_public_endpoint(cluster(), cfg) == []
    private = cluster(endpointPublicAccess=False, publicAccessCidrs=["0.0.0.0/0"])
    assert check_public_endpoint(private, cfg) == []


def test_a_public_endpoint_open_to_the_world() -> None:
    found = only(
        check_public_endpoint(cluster(publicAccessCidrs=["0.0.0.0/0"]), PublicEndpointConfig())
    )
    assert found.message == (
        "Cluster 'agents-dev': publicAccessCidrs has 0.0.0.0/0, wider than /16 "
        "(min_prefix_length); list the networks that may reach the API (each /16 or "
        "narrower) in vpcConfig.publicAccessCidrs, or set endpointPublicAccess: false."
    )


def test_a_public_endpoint_without_cidrs_is_open_to_the_world() -> None:
    # The old default: a public endpoint whose CIDRs were left to EKS.
    view = patched(cluster(), "vpcConfig.publicAccessCidrs", DELETE)
    found = only(check_public_endpoint(view, PublicEndpointConfig()))
    assert "no vpcConfig.publicAccessCidrs, so EKS opens it to 0.0.0.0/0" in found.message
    # endpointPublicAccess left out is true in the EKS API.
    unset = patched(view, "vpcConfig.endpointPublicAccess", DELETE)
    assert real(check_public_endpoint(unset, PublicEndpointConfig()))


def test_the_widest_prefix_is_configurable() -> None:
    view = cluster(publicAccessCidrs=["198.51.100.0/22"])
    assert check_public_endpoint(view, PublicEndpointConfig()) == []
    found = only(check_public_endpoint(view, PublicEndpointConfig(min_prefix_length=24)))
    assert "198.51.100.0/22, wider than /24" in found.message


# --- network-policy-enforced -----------------------------------------------------------


def test_a_pinned_vpc_cni_with_network_policy_passes() -> None:
    assert check_network_policy_enforced([cluster(), vpc_cni()], EnforcementConfig()) == []


def test_a_cluster_without_an_enforcing_cni() -> None:
    found = only(check_network_policy_enforced([cluster()], EnforcementConfig()))
    assert found.resource == "Cluster 'agents-dev'"
    assert found.message == (
        "Cluster 'agents-dev': does not enforce NetworkPolicies (it has no vpc-cni add-on "
        "and no enforcing CNI chart), so every default-deny policy is a no-op; add an "
        'aws.eks.Addon vpc-cni with configurationValues {"enableNetworkPolicy": "true"}, '
        "or install one of ['cilium', 'tigera-operator', 'calico'] (enforcing_cni_charts)."
    )


def test_a_vpc_cni_without_network_policy_or_unpinned() -> None:
    off = vpc_cni(configurationValues=json.dumps({"enableNetworkPolicy": "false"}))
    found = only(check_network_policy_enforced([cluster(), off], EnforcementConfig()))
    assert "its vpc-cni add-on sets enableNetworkPolicy to 'false'" in found.message
    unpinned = patched(vpc_cni(), "addonVersion", DELETE)
    found = only(check_network_policy_enforced([cluster(), unpinned], EnforcementConfig()))
    assert found.resource == "Addon 'agents-dev-vpc-cni'"
    assert "has no addonVersion" in found.message


def test_an_add_on_of_another_cluster_does_not_count() -> None:
    elsewhere = vpc_cni(clusterName="agents-other")
    assert real(check_network_policy_enforced([cluster(), elsewhere], EnforcementConfig()))


def test_an_enforcing_cni_chart_counts_and_no_cluster_needs_nothing() -> None:
    cilium = resource("kubernetes:helm.sh/v3:Release", "cilium", {"chart": "cilium"})
    assert check_network_policy_enforced([cluster(), cilium], EnforcementConfig()) == []
    assert check_network_policy_enforced([vpc()], EnforcementConfig()) == []


def test_unknown_add_on_configuration_is_undecided() -> None:
    [note] = check_network_policy_enforced(
        [cluster(), vpc_cni(configurationValues=UNKNOWN)], EnforcementConfig()
    )
    assert note.undetermined


# --- node-group-hardening --------------------------------------------------------------


def test_a_node_group_on_a_hardened_template_passes() -> None:
    assert check_nodes(node_group(), NodeConfig()) == []
    assert check_nodes(node_group(launchTemplate=UNKNOWN), NodeConfig()) == []
    assert check_nodes(launch_template(), NodeConfig()) == []


def test_a_node_group_without_a_launch_template() -> None:
    found = only(check_nodes(patched(node_group(), "launchTemplate", DELETE), NodeConfig()))
    assert found.message.startswith(
        "NodeGroup 'agents-system': has no launchTemplate, so its nodes take EKS's defaults "
        "(IMDSv1 allowed, hop limit 2"
    )


def test_a_template_allowing_imdsv1_or_a_second_hop() -> None:
    optional = patched(launch_template(), "metadataOptions.httpTokens", "optional")
    assert "metadataOptions.httpTokens is 'optional'; set httpTokens: required" in (
        only(check_nodes(optional, NodeConfig())).message
    )
    two_hops = patched(launch_template(), "metadataOptions.httpPutResponseHopLimit", 2)
    assert only(check_nodes(two_hops, NodeConfig())).message == (
        "LaunchTemplate 'agents-system': metadataOptions.httpPutResponseHopLimit is 2; set it "
        "to 1 (max_hop_limit) so pods cannot reach IMDS."
    )
    assert check_nodes(two_hops, NodeConfig(max_hop_limit=2)) == []
    unset = patched(launch_template(), "metadataOptions", DELETE)
    assert len(real(check_nodes(unset, NodeConfig()))) == 2


def test_a_template_with_unencrypted_or_unmapped_volumes() -> None:
    plain = patched(launch_template(), "blockDeviceMappings.0.ebs.encrypted", "false")
    assert only(check_nodes(plain, NodeConfig())).message == (
        "LaunchTemplate 'agents-system': blockDeviceMappings[0] (/dev/xvda) is not encrypted; "
        "set ebs.encrypted: true."
    )
    unmapped = patched(launch_template(), "blockDeviceMappings", DELETE)
    assert "has no blockDeviceMappings" in only(check_nodes(unmapped, NodeConfig())).message


def test_a_karpenter_node_class_fails_only_on_what_it_sets_otherwise() -> None:
    def node_class(spec: dict[str, Any]) -> ResourceView:
        return resource("kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", "gpu", {"spec": spec})

    # Karpenter's defaults are IMDSv2, hop limit 1, encrypted volumes.
    assert (
        check_nodes(node_class({"amiSelectorTerms": [{"alias": "al2023@latest"}]}), NodeConfig())
        == []
    )
    loose = node_class({"metadataOptions": {"httpTokens": "optional"}})
    assert (
        "spec.metadataOptions.httpTokens is 'optional'"
        in only(check_nodes(loose, NodeConfig())).message
    )
    plain = node_class(
        {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": "100Gi"}}]}
    )
    assert "spec.blockDeviceMappings[0] (/dev/xvda) is not encrypted" in (
        only(check_nodes(plain, NodeConfig())).message
    )


# --- kms-key-hardening -----------------------------------------------------------------


def test_a_rotating_key_with_an_explicit_policy_passes() -> None:
    assert check_kms_key(kms_key(), NoConfig()) == []
    assert check_kms_key(kms_key(policy=UNKNOWN), NoConfig()) == []
    # AWS does not rotate asymmetric keys.
    signing = kms_key(enableKeyRotation=False, customerMasterKeySpec="RSA_2048")
    assert check_kms_key(signing, NoConfig()) == []


def test_a_key_without_rotation_or_policy() -> None:
    found = only(check_kms_key(kms_key(enableKeyRotation=False), NoConfig()))
    assert found.message.startswith("Key 'agents-dev': enableKeyRotation is not true")
    found = only(check_kms_key(patched(kms_key(), "policy", DELETE), NoConfig()))
    assert found.message.startswith(
        "Key 'agents-dev': has no policy, so it gets AWS's implicit default"
    )


def test_a_key_policy_open_to_anyone() -> None:
    anyone = {
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt"}]
    }
    found = only(check_kms_key(kms_key(policy=json.dumps(anyone)), NoConfig()))
    assert 'policy allows Principal "*" without a Condition' in found.message
    anyone["Statement"][0]["Condition"] = {"StringEquals": {"kms:CallerAccount": "123456789012"}}
    assert check_kms_key(kms_key(policy=json.dumps(anyone)), NoConfig()) == []


# --- log-group-hardening ---------------------------------------------------------------


def test_an_encrypted_log_group_with_retention_passes() -> None:
    assert check_log_group(log_group(), LogGroupConfig(min_retention_days=14)) == []
    assert check_log_group(log_group(kmsKeyId=UNKNOWN), LogGroupConfig()) == []


def test_a_log_group_without_a_key() -> None:
    # The EKS control-plane group as it was: retention, no key.
    found = only(check_log_group(patched(log_group(), "kmsKeyId", DELETE), LogGroupConfig()))
    assert found.message.startswith(
        "LogGroup 'agents-dev-control-plane': has no kmsKeyId, so CloudWatch encrypts it with "
        "a key nobody controls"
    )


def test_a_log_group_kept_too_short_or_forever() -> None:
    found = only(
        check_log_group(log_group(retentionInDays=7), LogGroupConfig(min_retention_days=14))
    )
    assert found.message == (
        "LogGroup 'agents-dev-control-plane': retentionInDays is 7 days; set it per stack, "
        "at least 14 (min_retention_days)."
    )
    forever = patched(log_group(), "retentionInDays", DELETE)
    assert "retentionInDays is unset (logs never expire)" in (
        only(check_log_group(forever, LogGroupConfig())).message
    )


# --- elasticache-cmk -------------------------------------------------------------------


def test_elasticache_on_a_customer_managed_key() -> None:
    def group(props: dict[str, Any]) -> ResourceView:
        return resource("aws:elasticache/replicationGroup:ReplicationGroup", "queue-rg", props)

    for key in (KEY, UNKNOWN):
        assert check_elasticache_cmk(group({"kmsKeyId": key}), NoConfig()) == []
    found = only(check_elasticache_cmk(group({"atRestEncryptionEnabled": True}), NoConfig()))
    assert found.message == (
        "ReplicationGroup 'queue-rg': has no kmsKeyId, so its data at rest uses the "
        "AWS-managed key; set kmsKeyId to the stack's customer-managed KMS key."
    )


# --- over the stacks -------------------------------------------------------------------


def test_dev_with_its_endpoint_open_to_the_world_is_refused() -> None:
    cluster_config = {
        "region": "us-east-1",
        "availabilityZones": 2,
        "vpcCidr": "10.40.0.0/16",
        "privateEndpoint": False,
        "publicAccessCidrs": ["0.0.0.0/0"],
        "logRetentionDays": 14,
    }
    views = simulated_views("dev", overrides={"agent-platform:cluster": cluster_config})
    report = evaluate(views, configure(RULES, load_raw("dev")))
    [found] = report.mandatory
    assert found.rule == "eks-public-endpoint-restricted"
    assert found.resource == "Cluster 'agents-dev'"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_aws_stacks_hold_every_hardening_rule(stack: str) -> None:
    views = simulated_views(stack)
    kinds = {v.type for v in views}
    # The rules have something to look at: each resource they check is there.
    assert {
        "aws:ec2/flowLog:FlowLog",
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
        "aws:eks/addon:Addon",
        "aws:ec2/launchTemplate:LaunchTemplate",
        "aws:kms/key:Key",
        "aws:cloudwatch/logGroup:LogGroup",
    } <= kinds
    names = {
        "vpc-flow-logs",
        "default-security-group-restricted",
        "eks-public-endpoint-restricted",
        "network-policy-enforced",
        "node-group-hardening",
        "kms-key-hardening",
        "log-group-hardening",
        "elasticache-cmk",
    }
    rules = [c for c in configure(RULES, load_raw(stack)) if c.rule.name in names]
    assert {c.rule.name for c in rules} == names
    assert {c.enforcement for c in rules} == {"mandatory"}
    assert evaluate(views, rules).mandatory == []
