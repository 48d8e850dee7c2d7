"""A namespace the platform owns: Pod Security admission labels, and default-deny
NetworkPolicies for ingress and egress, so that every other policy is an explicit allow.
Every pod may still resolve names through the cluster DNS; where else a workload may
connect, its own egress policy says (components/egress.py)."""

from __future__ import annotations

from typing import Annotated, Literal

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import Namespace
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    NetworkPolicy,
    NetworkPolicyEgressRuleArgs,
    NetworkPolicyPeerArgs,
    NetworkPolicyPortArgs,
    NetworkPolicySpecArgs,
)
from pydantic import Field

from components.kube import NAMESPACE_NAME_LABEL, child_options, labels, match_labels
from components.values import ArgsModel

# A Kubernetes namespace name: a DNS label.
NamespaceName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class PlatformNamespaceArgs(ArgsModel):
    name: NamespaceName
    provider: k8s.Provider
    pod_security: Literal["restricted", "baseline", "privileged"] = "restricted"


class PlatformNamespace(pulumi.ComponentResource):
    name: pulumi.Output[str]

    def __init__(
        self, name: str, args: PlatformNamespaceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:namespace:PlatformNamespace", name, None, opts)
        k8s_opts = child_options(self, opts, provider=args.provider)
        namespace = Namespace(
            f"{name}-ns",
            metadata=ObjectMetaArgs(
                name=args.name,
                labels={
                    **labels(args.name, "namespace"),
                    "pod-security.kubernetes.io/enforce": args.pod_security,
                    "pod-security.kubernetes.io/warn": args.pod_security,
                },
            ),
            opts=k8s_opts,
        )
        NetworkPolicy(
            f"{name}-default-deny",
            metadata=ObjectMetaArgs(name="default-deny-ingress", namespace=namespace.metadata.name),
            spec=NetworkPolicySpecArgs(pod_selector=LabelSelectorArgs(), policy_types=["Ingress"]),
            opts=k8s_opts,
        )
        NetworkPolicy(
            f"{name}-default-deny-egress",
            metadata=ObjectMetaArgs(name="default-deny-egress", namespace=namespace.metadata.name),
            spec=NetworkPolicySpecArgs(pod_selector=LabelSelectorArgs(), policy_types=["Egress"]),
            opts=k8s_opts,
        )
        NetworkPolicy(
            f"{name}-dns",
            metadata=ObjectMetaArgs(name="allow-dns", namespace=namespace.metadata.name),
            spec=NetworkPolicySpecArgs(
                pod_selector=LabelSelectorArgs(),
                policy_types=["Egress"],
                egress=[
                    NetworkPolicyEgressRuleArgs(
                        to=[
                            NetworkPolicyPeerArgs(
                                namespace_selector=match_labels(
                                    {NAMESPACE_NAME_LABEL: "kube-system"}
                                ),
                                pod_selector=match_labels({"k8s-app": "kube-dns"}),
                            )
                        ],
                        ports=[
                            NetworkPolicyPortArgs(protocol=protocol, port=53)
                            for protocol in ("UDP", "TCP")
                        ],
                    )
                ],
            ),
            opts=k8s_opts,
        )
        self.name = namespace.metadata.apply(lambda m: m.name or args.name)
        self.register_outputs({"name": self.name})
