"""The agent API's way in: a Gateway API Gateway served by Envoy Gateway, and the
HTTPRoute that splits its requests between the stable and canary Services by weight.

Envoy Gateway (components/operators.py installs its pinned chart) is the implementation:
a CNCF project that passes the Gateway API conformance tests, and that on EKS publishes
each Gateway through a Service of type LoadBalancer, which the AWS Load Balancer
Controller (or the in-tree provider) turns into an NLB. The Service's annotations come
from the EnvoyProxy this GatewayClass names in `parametersRef`; that is where the load
balancer is kept internal. One Gateway uses this class, so the EnvoyProxy stands for
one load balancer (the bill, and the pack's reading in costing/kinds.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pydantic import model_validator

from components.billing import Billable, LoadBalancer
from components.certificates import (
    CERTIFICATE_SECRET,
    GatewayCertificate,
    GatewayCertificateArgs,
    IssuerConfig,
)
from components.kube import child_options, labels
from components.values import ArgsModel

CONTROLLER_NAME = "gateway.envoyproxy.io/gatewayclass-controller"
ENVOY_PROXY_API = "gateway.envoyproxy.io/v1alpha1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
GATEWAY_NAME = "agent-api"
# The port every agent Service serves HTTP on (components/agent_service.py).
SERVICE_PORT = 80
NLB_ANNOTATIONS = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
INTERNAL_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
}


class GatewayTls(ArgsModel):
    """The HTTPS listener's certificate: exactly one of a Secret the stack's owner keeps
    (bring your own) and an issuer cert-manager gets it from (components/certificates.py)."""

    # A kubernetes.io/tls Secret in the stack's namespace (from External Secrets or by hand).
    secret_name: str | None = None
    issuer: IssuerConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.secret_name is None) == (self.issuer is None):
            raise ValueError(
                "set exactly one of secretName (a kubernetes.io/tls Secret you provide) and "
                "issuer (cert-manager issues the certificate)"
            )
        return self

    @property
    def certificate_secret(self) -> str:
        return self.secret_name if self.secret_name is not None else CERTIFICATE_SECRET


class GatewayConfig(ArgsModel):
    """The stack file's `gateway` section."""

    enabled: bool = False
    host: str = "agents.example.internal"
    tls: GatewayTls | None = None


class AgentGatewayArgs(ArgsModel):
    namespace: str
    provider: k8s.Provider
    config: GatewayConfig
    # The AWS region (for an ACME issuer's Route53 solver); None off AWS.
    region: str | None = None


class AgentGateway(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    bill: list[Billable]

    def __init__(
        self, name: str, args: AgentGatewayArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:traffic:AgentGateway", name, None, opts)
        child = child_options(self, opts, provider=args.provider)
        # Internal in every environment: the agent API's clients are inside the VPC.
        annotations = NLB_ANNOTATIONS | INTERNAL_ANNOTATIONS
        proxy = CustomResource(
            f"{name}-envoy-proxy",
            api_version=ENVOY_PROXY_API,
            kind="EnvoyProxy",
            metadata=ObjectMetaArgs(
                name=GATEWAY_NAME,
                namespace=args.namespace,
                labels=labels(GATEWAY_NAME, "gateway"),
            ),
            spec={
                "provider": {
                    "type": "Kubernetes",
                    "kubernetes": {
                        "envoyService": {"type": "LoadBalancer", "annotations": annotations}
                    },
                }
            },
            opts=child,
        )
        # The Service asks AWS for a network load balancer (`nlb`).
        self.bill = [
            LoadBalancer(kind="EnvoyProxy", name=GATEWAY_NAME, type="network", in_cluster=True)
        ]
        class_name = f"{args.namespace}-{GATEWAY_NAME}"
        gateway_class = CustomResource(
            f"{name}-class",
            api_version=GATEWAY_API,
            kind="GatewayClass",
            # Cluster-scoped: named after the namespace, so stacks sharing a cluster differ.
            metadata=ObjectMetaArgs(name=class_name, labels=labels(GATEWAY_NAME, "gateway")),
            spec={
                "controllerName": CONTROLLER_NAME,
                "parametersRef": {
                    "group": ENVOY_PROXY_API.split("/")[0],
                    "kind": "EnvoyProxy",
                    "name": GATEWAY_NAME,
                    "namespace": args.namespace,
                },
            },
            opts=child_options(self, opts, provider=args.provider, depends_on=[proxy]),
        )
        tls = args.config.tls
        certificate: list[pulumi.Resource] = []
        if tls is not None and tls.issuer is not None:
            certificate.append(
                GatewayCertificate(
                    f"{name}-tls",
                    GatewayCertificateArgs(
                        namespace=args.namespace,
                        host=args.config.host,
                        issuer=tls.issuer,
                        provider=args.provider,
                        region=args.region,
                    ),
                    opts=child_options(self, opts, provider=args.provider),
                )
            )
        CustomResource(
            f"{name}-gateway",
            api_version=GATEWAY_API,
            kind="Gateway",
            metadata=ObjectMetaArgs(
                name=GATEWAY_NAME, namespace=args.namespace, labels=labels(GATEWAY_NAME, "gateway")
            ),
            spec={
                "gatewayClassName": class_name,
                "listeners": [listener(args.config.host, tls)],
            },
            opts=child_options(
                self, opts, provider=args.provider, depends_on=[gateway_class, *certificate]
            ),
        )
        scheme = "https" if tls else "http"
        self.endpoint = pulumi.Output.from_input(f"{scheme}://{args.config.host}")
        self.register_outputs({"endpoint": self.endpoint})


def listener(host: str, tls: GatewayTls | None) -> dict[str, object]:
    """The Gateway's one listener: HTTPS terminating with the configured certificate, or
    plain HTTP without one (a listener for both would leave a clear-text way in)."""
    if tls is None:
        return {"name": "http", "protocol": "HTTP", "port": 80, "hostname": host}
    return {
        "name": "https",
        "protocol": "HTTPS",
        "port": 443,
        "hostname": host,
        "tls": {
            "mode": "Terminate",
            "certificateRefs": [{"kind": "Secret", "name": tls.certificate_secret}],
        },
    }


def http_route_spec(
    host: str, services: Mapping[str, pulumi.Input[str]], canary_weight: int
) -> dict[str, object]:
    """All requests for `host` to the stable Service, and `canary_weight` percent of them
    to the canary's when there is one: the weights are the Gateway's exact split."""
    backends: list[dict[str, object]] = [
        {
            "name": services["stable"],
            "port": SERVICE_PORT,
            "weight": 100 - canary_weight if "canary" in services else 100,
        }
    ]
    if "canary" in services:
        backends.append({"name": services["canary"], "port": SERVICE_PORT, "weight": canary_weight})
    return {
        "parentRefs": [{"name": GATEWAY_NAME}],
        "hostnames": [host],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": backends,
            }
        ],
    }
