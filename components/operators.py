"""The cluster operators dev and prod rely on, each a pinned Helm chart behind a flag:
KEDA (queue-driven autoscaling), Envoy Gateway (the Gateway API implementation that
carries the agent API's traffic and canary weights: components/gateway.py), External
Secrets (Secrets Manager -> Kubernetes Secrets), cert-manager (the Gateway's certificate:
components/certificates.py) and Flagger (metric-gated releases through the Gateway:
components/progressive_delivery.py)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    NetworkPolicy,
    NetworkPolicyIngressRuleArgs,
    NetworkPolicySpecArgs,
)

from components.certificates import CERT_MANAGER_NAMESPACE
from components.karpenter import SYSTEM_POOL_LABELS
from components.kube import WORKLOAD_LABEL, child_options, tcp_ports
from components.values import ArgsModel, InputStr

IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"

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
    "cert_manager": (10250,),
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
    # The chart's OCI home, as Envoy Gateway's: pinned by version like the others.
    "cert_manager": (
        "cert-manager",
        CERT_MANAGER_NAMESPACE,
        "oci://quay.io/jetstack/charts/cert-manager",
        None,
    ),
}
FLAGGER_NAMESPACE = CHARTS["flagger"][1]

# Restricted Pod Security for each of cert-manager's pods (its chart's defaults, written
# out so a chart upgrade cannot loosen them), on the managed system nodes.
_POD_SECURITY: dict[str, object] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
_CERT_MANAGER_POD = {
    "nodeSelector": SYSTEM_POOL_LABELS,
    "securityContext": _POD_SECURITY,
    "containerSecurityContext": {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    },
}


def cert_manager_values(role_arn: InputStr | None) -> dict[str, object]:
    """cert-manager's chart values: its CRDs with it, every pod restricted and on the
    system nodes; with `role_arn`, the controller's account assumes it (IRSA, the ACME
    issuer's Route53 access), and the fsGroup lets the non-root controller read the
    projected token."""
    values: dict[str, object] = {
        "crds": {"enabled": True, "keep": True},
        **_CERT_MANAGER_POD,
        "webhook": _CERT_MANAGER_POD,
        "cainjector": _CERT_MANAGER_POD,
        "startupapicheck": _CERT_MANAGER_POD,
    }
    if role_arn is not None:
        values["serviceAccount"] = {"annotations": {IRSA_ANNOTATION: role_arn}}
        values["securityContext"] = {**_POD_SECURITY, "fsGroup": 1001}
    return values


class OperatorRelease(ArgsModel):
    enabled: bool = False
    chart_version: str


class OperatorsConfig(ArgsModel):
    """Which operators run, at which chart version: the stack file's `operators` section."""

    keda: OperatorRelease = OperatorRelease(chart_version="2.16.0")
    envoy_gateway: OperatorRelease = OperatorRelease(chart_version="v1.7.0")
    external_secrets: OperatorRelease = OperatorRelease(chart_version="0.10.5")
    flagger: OperatorRelease = OperatorRelease(chart_version="1.36.1")
    cert_manager: OperatorRelease = OperatorRelease(chart_version="v1.21.2")


class ClusterOperatorsArgs(ArgsModel):
    config: OperatorsConfig
    provider: k8s.Provider
    # The Prometheus Flagger checks at start (each analysis names its own).
    prometheus_url: str | None = None
    # The IAM role cert-manager's controller assumes (an ACME issuer's DNS-01), if any.
    cert_manager_role_arn: InputStr | None = None


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
            if key == "cert_manager":
                values = cert_manager_values(args.cert_manager_role_arn)
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
