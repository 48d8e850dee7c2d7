"""The cluster operators dev and prod rely on, each a pinned Helm chart behind a flag:
KEDA (queue-driven autoscaling), ingress-nginx (canary traffic weights) and External
Secrets (Secrets Manager -> Kubernetes Secrets)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    NetworkPolicy,
    NetworkPolicyIngressRuleArgs,
    NetworkPolicySpecArgs,
)

from components.billing import Billable, LoadBalancer
from components.kube import child_options, tcp_ports
from components.values import ArgsModel

# What reaches each operator's pods: the API server calls webhooks and the metrics API
# (from outside the pod network, so from any address), and ingress-nginx takes traffic.
# Everything else is denied.
OPEN_PORTS = {
    "keda": (6443, 9443),
    "ingress_nginx": (80, 443, 8443),
    "external_secrets": (10250,),
}

CHART_REPOSITORIES = {
    "keda": ("keda", "https://kedacore.github.io/charts"),
    "ingress_nginx": ("ingress-nginx", "https://kubernetes.github.io/ingress-nginx"),
    "external_secrets": ("external-secrets", "https://charts.external-secrets.io"),
}


class OperatorRelease(ArgsModel):
    enabled: bool = False
    chart_version: str


class OperatorsConfig(ArgsModel):
    """Which operators run, at which chart version: the stack file's `operators` section."""

    keda: OperatorRelease = OperatorRelease(chart_version="2.16.0")
    ingress_nginx: OperatorRelease = OperatorRelease(chart_version="4.11.3")
    external_secrets: OperatorRelease = OperatorRelease(chart_version="0.10.5")


class ClusterOperatorsArgs(ArgsModel):
    config: OperatorsConfig
    provider: k8s.Provider
    # Keep the ingress controller's load balancer inside the VPC.
    internal_load_balancer: bool = True


class ClusterOperators(pulumi.ComponentResource):
    releases: dict[str, k8s.helm.v3.Release]
    ingress_namespace: str | None
    # What the ingress controller's load balancer is billed by.
    bill: list[Billable]

    def __init__(
        self, name: str, args: ClusterOperatorsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:operators:ClusterOperators", name, None, opts)
        self.releases = {}
        self.ingress_namespace = None
        self.bill = []
        for key, (chart, repository) in CHART_REPOSITORIES.items():
            release = getattr(args.config, key)
            if not release.enabled:
                continue
            namespace = chart if chart != "keda" else "keda"
            values: dict[str, object] = {}
            if key == "ingress_nginx":
                self.ingress_namespace = namespace
                annotations = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
                if args.internal_load_balancer:
                    annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] = "internal"
                    annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] = "true"
                values = {
                    "controller": {
                        "replicaCount": 2,
                        "service": {"type": "LoadBalancer", "annotations": annotations},
                        "metrics": {"enabled": True},
                    }
                }
                # The controller's Service asks AWS for a network load balancer (`nlb`).
                self.bill.append(
                    LoadBalancer(
                        kind="Release", name=f"{name}-{chart}", type="network", in_cluster=True
                    )
                )
            if key == "external_secrets":
                values = {"installCRDs": True}
            self.releases[key] = k8s.helm.v3.Release(
                f"{name}-{chart}",
                name=chart,
                chart=chart,
                version=release.chart_version,
                repository_opts={"repo": repository},
                namespace=namespace,
                create_namespace=True,
                atomic=True,
                timeout=600,
                values=values,
                opts=child_options(self, opts, provider=args.provider),
            )
            NetworkPolicy(
                f"{name}-{chart}-ingress",
                metadata=ObjectMetaArgs(name="operator-ingress", namespace=namespace),
                spec=NetworkPolicySpecArgs(
                    pod_selector=LabelSelectorArgs(),
                    policy_types=["Ingress"],
                    ingress=[NetworkPolicyIngressRuleArgs(ports=tcp_ports(*OPEN_PORTS[key]))],
                ),
                # Helm creates the namespace.
                opts=child_options(
                    self, opts, provider=args.provider, depends_on=[self.releases[key]]
                ),
            )
        self.register_outputs({"releases": list(self.releases)})
