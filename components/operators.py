"""The cluster operators dev and prod rely on, each a pinned Helm chart behind a flag:
KEDA (queue-driven autoscaling), Envoy Gateway (the Gateway API implementation that
carries the agent API's traffic and canary weights: components/gateway.py), External
Secrets (Secrets Manager -> Kubernetes Secrets) and Flagger (metric-gated releases through
the Gateway: components/progressive_delivery.py)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    NetworkPolicy,
    NetworkPolicyIngressRuleArgs,
    NetworkPolicySpecArgs,
)

from components.kube import WORKLOAD_LABEL, child_options, tcp_ports
from components.values import ArgsModel

# What reaches each operator's pods: the API server calls webhooks and the metrics API
# (from outside the pod network, so from any address). Envoy Gateway's namespace also
# holds the Envoy proxies it deploys per Gateway: they take the load balancer's traffic
# (listener ports under 1024 are served on port + 10000) and fetch their configuration
# from the controller's xDS server (18000). Everything else is denied.
OPEN_PORTS = {
    "keda": (6443, 9443),
    "envoy_gateway": (9443, 18000, 10080, 10443),
    "external_secrets": (10250,),
    # Flagger serves no webhook; nothing calls it.
    "flagger": (),
}

# (release name, namespace, chart, chart repository: None for an OCI chart reference)
CHARTS: dict[str, tuple[str, str, str, str | None]] = {
    "keda": ("keda", "keda", "keda", "https://kedacore.github.io/charts"),
    "envoy_gateway": (
        "envoy-gateway",
        "envoy-gateway-system",
        "oci://docker.io/envoyproxy/gateway-helm",
        None,
    ),
    "external_secrets": (
        "external-secrets",
        "external-secrets",
        "external-secrets",
        "https://charts.external-secrets.io",
    ),
    "flagger": ("flagger", "flagger-system", "flagger", "https://flagger.app"),
}
FLAGGER_NAMESPACE = CHARTS["flagger"][1]


class OperatorRelease(ArgsModel):
    enabled: bool = False
    chart_version: str


class OperatorsConfig(ArgsModel):
    """Which operators run, at which chart version: the stack file's `operators` section."""

    keda: OperatorRelease = OperatorRelease(chart_version="2.16.0")
    envoy_gateway: OperatorRelease = OperatorRelease(chart_version="v1.7.0")
    external_secrets: OperatorRelease = OperatorRelease(chart_version="0.10.5")
    flagger: OperatorRelease = OperatorRelease(chart_version="1.36.1")


class ClusterOperatorsArgs(ArgsModel):
    config: OperatorsConfig
    provider: k8s.Provider
    # The Prometheus Flagger checks at start (each analysis names its own).
    prometheus_url: str | None = None


class ClusterOperators(pulumi.ComponentResource):
    releases: dict[str, k8s.helm.v3.Release]
    # Where the Gateway's Envoy proxies run: the agent API's only clients besides tests.
    gateway_namespace: str | None

    def __init__(
        self, name: str, args: ClusterOperatorsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:operators:ClusterOperators", name, None, opts)
        self.releases = {}
        self.gateway_namespace = None
        for key, (release_name, namespace, chart, repository) in CHARTS.items():
            release = getattr(args.config, key)
            if not release.enabled:
                continue
            values: dict[str, object] = {}
            if key == "envoy_gateway":
                self.gateway_namespace = namespace
            if key == "external_secrets":
                values = {"installCRDs": True}
            if key == "flagger":
                values = {
                    "meshProvider": "gatewayapi:v1",
                    # The label Flagger selects pods by and rewrites on its primaries:
                    # one of the platform's own, so that no shared label changes meaning.
                    "selectorLabels": WORKLOAD_LABEL,
                    **({"metricsServer": args.prometheus_url} if args.prometheus_url else {}),
                }
            self.releases[key] = k8s.helm.v3.Release(
                f"{name}-{release_name}",
                name=release_name,
                chart=chart,
                version=release.chart_version,
                repository_opts={"repo": repository} if repository else None,
                namespace=namespace,
                create_namespace=True,
                atomic=True,
                timeout=600,
                values=values,
                opts=child_options(self, opts, provider=args.provider),
            )
            NetworkPolicy(
                f"{name}-{release_name}-ingress",
                metadata=ObjectMetaArgs(name="operator-ingress", namespace=namespace),
                spec=NetworkPolicySpecArgs(
                    pod_selector=LabelSelectorArgs(),
                    policy_types=["Ingress"],
                    # No ports: no rule, since a rule without ports would admit every port.
                    ingress=[NetworkPolicyIngressRuleArgs(ports=tcp_ports(*OPEN_PORTS[key]))]
                    if OPEN_PORTS[key]
                    else [],
                ),
                # Helm creates the namespace.
                opts=child_options(
                    self, opts, provider=args.provider, depends_on=[self.releases[key]]
                ),
            )
        self.register_outputs({"releases": list(self.releases)})
