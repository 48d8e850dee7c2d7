"""Egress of one workload: the destinations it needs, and nothing else.

Every platform namespace denies egress by default (components/namespace.py, which also
lets every pod resolve names through the cluster DNS); each workload then gets one
NetworkPolicy listing where it may connect. Standard NetworkPolicies match addresses, not
names: a destination outside the cluster is an address block, and `Internet` means every
public address (private ranges and the link-local block, where the instance metadata
service answers, are always left out). The app checks names itself (the fetch tool's
allowlist); a CNI with name-based policies could narrow the public part further.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    IPBlockArgs,
    NetworkPolicy,
    NetworkPolicyEgressRuleArgs,
    NetworkPolicyPeerArgs,
    NetworkPolicySpecArgs,
)
from pydantic import Field, field_validator

from components.kube import NAME_LABEL, NAMESPACE_NAME_LABEL, child_options, labels, match_labels
from components.values import ArgsModel

# Never reachable from a workload: the instance metadata service (AWS credentials of the
# node) lives in the link-local block.
LINK_LOCAL = "169.254.0.0/16"
INSTANCE_METADATA = "169.254.169.254/32"
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")

Port = Annotated[int, Field(ge=1, le=65535)]


class Pods(ArgsModel):
    """Pods named `app` (app.kubernetes.io/name), in `namespace` or the workload's own."""

    kind: Literal["pods"] = "pods"
    app: str
    namespace: str | None = None
    ports: Annotated[list[Port], Field(min_length=1)]


class Addresses(ArgsModel):
    """Address blocks outside the cluster (a VPC's CIDR for a managed Redis, the API
    server's addresses), never the link-local block."""

    kind: Literal["addresses"] = "addresses"
    cidrs: Annotated[list[str], Field(min_length=1)]
    ports: Annotated[list[Port], Field(min_length=1)]

    @field_validator("cidrs")
    @classmethod
    def _no_metadata_service(cls, cidrs: list[str]) -> list[str]:
        import ipaddress

        metadata = ipaddress.ip_network(INSTANCE_METADATA)
        for cidr in cidrs:
            if ipaddress.ip_network(cidr, strict=False).overlaps(metadata):
                raise ValueError(f"{cidr} includes the instance metadata address")
        return cidrs


class Internet(ArgsModel):
    """Public addresses on `ports`: a hosted model's endpoint, a model hub, the fetch
    tool's allowlisted sites."""

    kind: Literal["internet"] = "internet"
    ports: Annotated[list[Port], Field(min_length=1)]


Destination = Annotated[Pods | Addresses | Internet, Field(discriminator="kind")]


class WorkloadEgressArgs(ArgsModel):
    namespace: str
    # The workload's pods: app.kubernetes.io/name, every track of it.
    app: str
    to: list[Destination]
    provider: k8s.Provider


class WorkloadEgress(pulumi.ComponentResource):
    """Exposes `policy_name`, the workload's egress NetworkPolicy."""

    policy_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: WorkloadEgressArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:network:WorkloadEgress", name, None, opts)
        policy = NetworkPolicy(
            f"{name}-egress",
            metadata=ObjectMetaArgs(
                name=f"{args.app}-egress",
                namespace=args.namespace,
                labels=labels(args.app, "network"),
            ),
            spec=NetworkPolicySpecArgs(
                pod_selector=match_labels({NAME_LABEL: args.app}),
                policy_types=["Egress"],
                egress=[_rule(destination) for destination in args.to],
            ),
            opts=child_options(self, opts, provider=args.provider),
        )
        self.policy_name = policy.metadata.apply(lambda m: m.name or f"{args.app}-egress")
        self.register_outputs({"policyName": self.policy_name})


def _rule(destination: Pods | Addresses | Internet) -> NetworkPolicyEgressRuleArgs:
    ports = _ports(destination.ports)
    if isinstance(destination, Pods):
        peer = NetworkPolicyPeerArgs(
            pod_selector=match_labels({NAME_LABEL: destination.app}),
            namespace_selector=match_labels({NAMESPACE_NAME_LABEL: destination.namespace})
            if destination.namespace
            else None,
        )
        return NetworkPolicyEgressRuleArgs(to=[peer], ports=ports)
    if isinstance(destination, Addresses):
        peers = [NetworkPolicyPeerArgs(ip_block=IPBlockArgs(cidr=c)) for c in destination.cidrs]
        return NetworkPolicyEgressRuleArgs(to=peers, ports=ports)
    public = IPBlockArgs(cidr="0.0.0.0/0", except_=[*PRIVATE_RANGES, LINK_LOCAL])
    return NetworkPolicyEgressRuleArgs(to=[NetworkPolicyPeerArgs(ip_block=public)], ports=ports)


def _ports(ports: Sequence[int]) -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    return [k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=p) for p in ports]
