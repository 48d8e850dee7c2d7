"""AgentGateway: Envoy Gateway's GatewayClass (with the EnvoyProxy that keeps its load
balancer internal), and the Gateway whose listener is HTTPS with the configured
certificate, or HTTP without one."""

from __future__ import annotations

import pytest
from component_mocks import Graph, evaluate, priced_both_ways, provider

from components.gateway import AgentGateway, AgentGatewayArgs, GatewayConfig

GATEWAY_COMPONENT = "agent-platform:traffic:AgentGateway"
GATEWAY_API = "kubernetes:gateway.networking.k8s.io/v1"
ENVOY_PROXY = "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy"


def _gateway(config: dict[str, object]) -> tuple[AgentGateway, Graph]:
    gateway_config = GatewayConfig.model_validate({"enabled": True, **config})

    def program() -> AgentGateway:
        return AgentGateway(
            "agent-gateway",
            AgentGatewayArgs(namespace="agents", provider=provider(), config=gateway_config),
        )

    return evaluate(program)


def test_the_class_names_envoy_gateway_and_an_internal_load_balancer() -> None:
    _, graph = _gateway({"host": "agents.internal.example.com"})
    component = graph.component(GATEWAY_COMPONENT)
    assert sorted(graph.kinds(component)) == [
        ("kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy", "agent-gateway-envoy-proxy"),
        (f"{GATEWAY_API}:Gateway", "agent-gateway-gateway"),
        (f"{GATEWAY_API}:GatewayClass", "agent-gateway-class"),
    ]
    gateway_class = graph.named(f"{GATEWAY_API}:GatewayClass", "agent-gateway-class").inputs
    assert gateway_class["spec"] == {
        "controllerName": "gateway.envoyproxy.io/gatewayclass-controller",
        "parametersRef": {
            "group": "gateway.envoyproxy.io",
            "kind": "EnvoyProxy",
            "name": "agent-api",
            "namespace": "agents",
        },
    }
    proxy = graph.named(ENVOY_PROXY, "agent-gateway-envoy-proxy").inputs
    assert proxy["metadata"]["namespace"] == "agents"
    service = proxy["spec"]["provider"]["kubernetes"]["envoyService"]
    assert service["type"] == "LoadBalancer"
    assert service["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == (
        "internal"
    )
    spec = graph.named(f"{GATEWAY_API}:Gateway", "agent-gateway-gateway").inputs["spec"]
    assert spec["gatewayClassName"] == gateway_class["metadata"]["name"] == "agents-agent-api"
    assert spec["listeners"] == [
        {"name": "http", "protocol": "HTTP", "port": 80, "hostname": "agents.internal.example.com"}
    ]
    assert graph.outputs_of(component) == {"endpoint": "http://agents.internal.example.com"}


def test_with_tls_the_only_listener_is_https_with_the_configured_certificate() -> None:
    _, graph = _gateway({"host": "agents.example.com", "tls": {"secretName": "agent-api-tls"}})
    spec = graph.named(f"{GATEWAY_API}:Gateway", "agent-gateway-gateway").inputs["spec"]
    assert spec["listeners"] == [
        {
            "name": "https",
            "protocol": "HTTPS",
            "port": 443,
            "hostname": "agents.example.com",
            "tls": {
                "mode": "Terminate",
                "certificateRefs": [{"kind": "Secret", "name": "agent-api-tls"}],
            },
        }
    ]
    component = graph.component(GATEWAY_COMPONENT)
    assert graph.outputs_of(component) == {"endpoint": "https://agents.example.com"}


def test_the_bill_is_the_gateways_network_load_balancer() -> None:
    gateway, graph = _gateway({})
    declared, registered = priced_both_ways(gateway.bill, graph)
    assert declared == registered
    balancers = [i["item"] for i in declared["items"] if i["item"].startswith("Load balancer")]
    assert balancers == ["Load balancer 'agent-api' (network)"]


def test_tls_needs_a_secret_name() -> None:
    with pytest.raises(ValueError, match=r"tls.secretName\n  Field required"):
        GatewayConfig.model_validate({"tls": {}})
