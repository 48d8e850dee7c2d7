"""The AWS network around the cluster: VPC flow logs, the default security group, who
may reach the EKS API, and whether the cluster enforces NetworkPolicies at all."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field

from costing.kinds import EKS_CLUSTER, HELM_RELEASE
from costing.view import UNKNOWN, ResourceView, dig
from policies.rule import NoConfig, PositiveCount, ResourceRule, Rule, RuleConfig, StackRule
from policies.violation import Violation, undetermined, violation

FLOW_LOGS = "vpc-flow-logs"
DEFAULT_SG = "default-security-group-restricted"
PUBLIC_ENDPOINT = "eks-public-endpoint-restricted"
NETPOL_ENFORCED = "network-policy-enforced"

VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
ADDON = "aws:eks/addon:Addon"


class FlowLogConfig(RuleConfig):
    # ALL: rejected flows alone miss what an attacker did once a rule let them in.
    traffic_type: str = Field(default="ALL", pattern="^(ALL|ACCEPT|REJECT)$")


def check_flow_logs(resources: Sequence[ResourceView], cfg: FlowLogConfig) -> list[Violation]:
    vpcs = [r for r in resources if r.type == VPC]
    # A VPC's id is unknown until it exists, so flow logs are counted, not matched.
    on_vpcs = [r for r in resources if r.type == FLOW_LOG and r.get("vpcId")]
    found: list[Violation] = []
    for flow in on_vpcs:
        traffic = flow.get("trafficType")
        if traffic is UNKNOWN:
            found.append(undetermined(FLOW_LOGS, flow, "trafficType unknown at preview."))
        elif traffic != cfg.traffic_type:
            found.append(
                violation(
                    FLOW_LOGS,
                    flow,
                    f"trafficType is {traffic!r}; set trafficType: {cfg.traffic_type} "
                    "(traffic_type in the stack's policy config).",
                )
            )
        if not flow.get("logDestination") and not flow.get("logGroupName"):
            found.append(
                violation(
                    FLOW_LOGS,
                    flow,
                    "has no logDestination; send it to a KMS-encrypted CloudWatch log group "
                    "(or an S3 bucket).",
                )
            )
    if len(on_vpcs) < len(vpcs):
        found += [
            violation(
                FLOW_LOGS,
                vpc,
                f"the stack has {len(vpcs)} VPC(s) but {len(on_vpcs)} flow log(s) on a VPC; "
                "add an aws.ec2.FlowLog with vpcId for each VPC, so that traffic in and "
                "out of it can be investigated.",
            )
            for vpc in vpcs
        ]
    return found


def check_default_security_group(
    resources: Sequence[ResourceView], _cfg: NoConfig
) -> list[Violation]:
    vpcs = [r for r in resources if r.type == VPC]
    groups = [r for r in resources if r.type == DEFAULT_SECURITY_GROUP]
    found: list[Violation] = []
    for group in groups:
        for field in ("ingress", "egress"):
            rules = group.get(field)
            if rules is UNKNOWN:
                found.append(undetermined(DEFAULT_SG, group, f"{field} unknown at preview."))
            # Absent means none: the provider strips every rule of a group it adopts.
            elif rules:
                found.append(
                    violation(
                        DEFAULT_SG,
                        group,
                        f"has {len(rules)} {field} rule(s); set {field}: [] so that "
                        "nothing put in the default group by mistake can talk.",
                    )
                )
    if len(groups) < len(vpcs):
        found += [
            violation(
                DEFAULT_SG,
                vpc,
                f"the stack has {len(vpcs)} VPC(s) but manages {len(groups)} default "
                "security group(s); AWS's default allows all traffic among its members and "
                "all egress: adopt it with an aws.ec2.DefaultSecurityGroup with no ingress "
                "or egress for each VPC.",
            )
            for vpc in vpcs
        ]
    return found


class PublicEndpointConfig(RuleConfig):
    # The widest range a public endpoint may admit: a /16 by default, never /0.
    min_prefix_length: Annotated[PositiveCount, Field(le=32)] = 16


def check_public_endpoint(resource: ResourceView, cfg: PublicEndpointConfig) -> list[Violation]:
    if resource.type != EKS_CLUSTER:
        return []
    public = resource.get("vpcConfig", "endpointPublicAccess")
    if public is False:
        return []
    if public is UNKNOWN:
        return [undetermined(PUBLIC_ENDPOINT, resource, "endpointPublicAccess unknown.")]
    cidrs = resource.get("vpcConfig", "publicAccessCidrs")
    if cidrs is UNKNOWN:
        return [undetermined(PUBLIC_ENDPOINT, resource, "publicAccessCidrs unknown.")]
    fix = (
        f"list the networks that may reach the API (each /{cfg.min_prefix_length} or "
        "narrower) in vpcConfig.publicAccessCidrs, or set endpointPublicAccess: false."
    )
    # The EKS API's default is 0.0.0.0/0.
    if not cidrs:
        return [
            violation(
                PUBLIC_ENDPOINT,
                resource,
                "has a public endpoint and no vpcConfig.publicAccessCidrs, so EKS opens it "
                f"to 0.0.0.0/0; {fix}",
            )
        ]
    found: list[Violation] = []
    for cidr in cidrs:
        if cidr is UNKNOWN:
            found.append(undetermined(PUBLIC_ENDPOINT, resource, "a public CIDR is unknown."))
            continue
        try:
            network = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            found.append(
                violation(PUBLIC_ENDPOINT, resource, f"publicAccessCidrs has {cidr!r}; {fix}")
            )
            continue
        if network.prefixlen < cfg.min_prefix_length:
            found.append(
                violation(
                    PUBLIC_ENDPOINT,
                    resource,
                    f"publicAccessCidrs has {cidr}, wider than /{cfg.min_prefix_length} "
                    f"(min_prefix_length); {fix}",
                )
            )
    return found


class EnforcementConfig(RuleConfig):
    # Helm charts of CNIs that enforce NetworkPolicies in place of vpc-cni's agent.
    enforcing_cni_charts: tuple[str, ...] = ("cilium", "tigera-operator", "calico")


def _network_policy_flag(values: Any) -> Any:
    """vpc-cni's enableNetworkPolicy from the add-on's configurationValues (JSON text)."""
    if values is UNKNOWN:
        return UNKNOWN
    if not isinstance(values, str) or not values.strip():
        return None
    try:
        parsed = json.loads(values)
    except json.JSONDecodeError:
        return None
    return dig(parsed, "enableNetworkPolicy")


def _same_cluster(addon: ResourceView, cluster: ResourceView) -> bool:
    # Both names known and different is the only proof that the add-on is elsewhere.
    names = (addon.get("clusterName"), cluster.get("name"))
    return not all(isinstance(n, str) for n in names) or names[0] == names[1]


def check_network_policy_enforced(
    resources: Sequence[ResourceView], cfg: EnforcementConfig
) -> list[Violation]:
    clusters = [r for r in resources if r.type == EKS_CLUSTER]
    if not clusters:
        return []
    cnis = [r for r in resources if r.type == ADDON and r.get("addonName") == "vpc-cni"]
    found: list[Violation] = []
    for addon in cnis:
        if not addon.get("addonVersion"):
            found.append(
                violation(
                    NETPOL_ENFORCED,
                    addon,
                    "has no addonVersion, so EKS picks one at create time and upgrades are "
                    "unreviewed; pin addonVersion (aws eks describe-addon-versions).",
                )
            )
    charts = [
        r
        for r in resources
        if r.type == HELM_RELEASE
        and isinstance(r.get("chart"), str)
        and r.get("chart").rsplit("/", 1)[-1] in cfg.enforcing_cni_charts
    ]
    for cluster in clusters:
        mine = [a for a in cnis if _same_cluster(a, cluster)]
        flags = [_network_policy_flag(a.get("configurationValues")) for a in mine]
        if charts or any(f in ("true", True) for f in flags):
            continue
        if UNKNOWN in flags:
            found.append(
                undetermined(NETPOL_ENFORCED, cluster, "vpc-cni configurationValues unknown.")
            )
            continue
        seen = (
            f"its vpc-cni add-on sets enableNetworkPolicy to {flags[0]!r}"
            if mine
            else "it has no vpc-cni add-on and no enforcing CNI chart"
        )
        found.append(
            violation(
                NETPOL_ENFORCED,
                cluster,
                f"does not enforce NetworkPolicies ({seen}), so every default-deny policy "
                "is a no-op; add an aws.eks.Addon vpc-cni with configurationValues "
                '{"enableNetworkPolicy": "true"}, or install one of '
                f"{list(cfg.enforcing_cni_charts)} (enforcing_cni_charts).",
            )
        )
    return found


RULES: list[Rule] = [
    StackRule(
        FLOW_LOGS,
        "Every VPC has a flow log with the required trafficType and a destination.",
        "mandatory",
        FlowLogConfig,
        check_flow_logs,
        "VPC ids are unknown before creation, so flow logs with a vpcId (known or not) are "
        "counted against the VPCs; an unknown trafficType is skipped with an advisory note.",
    ),
    StackRule(
        DEFAULT_SG,
        "Every VPC's default security group is adopted with no ingress and no egress rules.",
        "mandatory",
        NoConfig,
        check_default_security_group,
        "Default security groups are counted against the VPCs; unknown rule lists are "
        "skipped with an advisory note.",
    ),
    ResourceRule(
        PUBLIC_ENDPOINT,
        "An EKS public API endpoint admits only listed CIDRs, none wider than "
        "min_prefix_length (never 0.0.0.0/0).",
        "mandatory",
        PublicEndpointConfig,
        check_public_endpoint,
        "An unknown endpoint flag or CIDR is skipped with an advisory note; missing CIDRs "
        "fail (EKS defaults them to 0.0.0.0/0).",
    ),
    StackRule(
        NETPOL_ENFORCED,
        "A stack with an EKS cluster enforces NetworkPolicies: a pinned vpc-cni add-on with "
        "enableNetworkPolicy, or an enforcing CNI chart.",
        "mandatory",
        EnforcementConfig,
        check_network_policy_enforced,
        "An add-on whose cluster name is unknown counts for every cluster; unknown "
        "configurationValues are skipped with an advisory note.",
    ),
]
