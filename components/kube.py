"""Conventions every Kubernetes object of the platform follows.

Labels, the restricted security context and the GPU scheduling keys live here so that
the components, the policy pack and the tests agree on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pulumi
from pulumi_kubernetes.core.v1 import (
    CapabilitiesArgs,
    PodSecurityContextArgs,
    SeccompProfileArgs,
    SecurityContextArgs,
    TolerationArgs,
    TopologySpreadConstraintArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, LabelSelectorRequirementArgs
from pulumi_kubernetes.networking.v1 import (
    NetworkPolicyIngressRuleArgs,
    NetworkPolicyPeerArgs,
    NetworkPolicyPortArgs,
    NetworkPolicySpecArgs,
)

from components.gpu_instances import GPU

PART_OF = "agent-platform"
GPU_RESOURCE = GPU
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_POOL_LABEL = "agent-platform.io/node-pool"
GPU_POOL_VALUE = "gpu"
GPU_POOL_NAME_LABEL = "agent-platform.io/gpu-pool"
TRACK_LABEL = "agent-platform.io/track"
VERSION_LABEL = "app.kubernetes.io/version"
NAME_LABEL = "app.kubernetes.io/name"
# The Deployment a pod belongs to, set only on releases Flagger manages: its selector
# label, which it rewrites to `<deployment>-primary` on the stable copy.
WORKLOAD_LABEL = "agent-platform.io/workload"


def labels(name: str, component: str, **extra: str) -> dict[str, str]:
    return {
        NAME_LABEL: name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
        **extra,
    }


def selector(name: str, **extra: str) -> dict[str, str]:
    """The immutable subset of labels a controller selects its pods by."""
    return {NAME_LABEL: name, "app.kubernetes.io/part-of": PART_OF, **extra}


def restricted_container_security() -> SecurityContextArgs:
    """The Pod Security Standards 'restricted' profile, plus a read-only root."""
    return SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=SeccompProfileArgs(type="RuntimeDefault"),
    )


def restricted_pod_security(uid: int) -> PodSecurityContextArgs:
    return PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        fs_group=uid,
        seccomp_profile=SeccompProfileArgs(type="RuntimeDefault"),
    )


def gpu_tolerations() -> list[TolerationArgs]:
    return [TolerationArgs(key=GPU_TAINT_KEY, operator="Exists", effect="NoSchedule")]


def gpu_node_selector() -> dict[str, str]:
    return {GPU_POOL_LABEL: GPU_POOL_VALUE}


def match_labels(selected: dict[str, str]) -> LabelSelectorArgs:
    return LabelSelectorArgs(match_labels=selected)


def spread_over_zones_and_nodes(
    pod_labels: dict[str, str],
) -> list[TopologySpreadConstraintArgs]:
    """Spread replicas over zones, and over nodes within a zone, without blocking scheduling."""
    return [
        TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key=key,
            when_unsatisfiable="ScheduleAnyway",
            label_selector=match_labels(pod_labels),
        )
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def child_options(
    parent: pulumi.Resource,
    opts: pulumi.ResourceOptions | None,
    *,
    provider: pulumi.ProviderResource | None = None,
    depends_on: Sequence[pulumi.Resource] = (),
) -> pulumi.ResourceOptions:
    """Options for a component's children: parented to it, and waiting on whatever the
    component itself was told to wait on (Pulumi does not pass a component's
    `depends_on` down to its children, and a Namespace must exist before its objects)."""
    inherited: list[Any] = []
    if opts is not None and opts.depends_on is not None:
        given = opts.depends_on
        inherited = list(given) if isinstance(given, list | tuple) else [given]
    return pulumi.ResourceOptions(
        parent=parent, provider=provider, depends_on=[*inherited, *depends_on] or None
    )


def secret(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """Mark a string as a Pulumi secret (it usually is already; this keeps it one)."""
    return cast("pulumi.Output[str]", pulumi.Output.secret(value))


# The label Kubernetes sets on every namespace, naming it.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# The agent's own pods: the only clients of Redis and of the LLM.
AGENT_CLIENTS = ("agent-api", "agent-worker")


def tcp_ports(*ports: int) -> list[NetworkPolicyPortArgs]:
    return [NetworkPolicyPortArgs(protocol="TCP", port=port) for port in ports]


def agent_clients_only(
    app: str,
    port: int,
    *,
    scraped_on: int | None = None,
    client_namespaces: Sequence[str] = (),
) -> NetworkPolicySpecArgs:
    """A NetworkPolicy spec admitting only the agent's pods to `app` on `port` (and any
    pod of `client_namespaces`, such as KEDA's scaler reading the queue), and Prometheus
    on `scraped_on` when the pods export metrics."""
    agents = LabelSelectorRequirementArgs(key=NAME_LABEL, operator="In", values=list(AGENT_CLIENTS))
    rules = [
        NetworkPolicyIngressRuleArgs(
            from_=[
                NetworkPolicyPeerArgs(pod_selector=LabelSelectorArgs(match_expressions=[agents])),
                *(
                    NetworkPolicyPeerArgs(
                        namespace_selector=match_labels({NAMESPACE_NAME_LABEL: namespace})
                    )
                    for namespace in client_namespaces
                ),
            ],
            ports=tcp_ports(port),
        )
    ]
    if scraped_on is not None:
        rules.append(prometheus_scrapes(scraped_on))
    return NetworkPolicySpecArgs(
        pod_selector=match_labels(selector(app)), policy_types=["Ingress"], ingress=rules
    )


def prometheus_scrapes(port: int, namespace: str | None = None) -> NetworkPolicyIngressRuleArgs:
    """An ingress rule admitting Prometheus (of `namespace`, or of the pod's own) on `port`."""
    return NetworkPolicyIngressRuleArgs(
        from_=[
            NetworkPolicyPeerArgs(
                pod_selector=match_labels({NAME_LABEL: "prometheus"}),
                namespace_selector=match_labels({NAMESPACE_NAME_LABEL: namespace})
                if namespace
                else None,
            )
        ],
        ports=tcp_ports(port),
    )
