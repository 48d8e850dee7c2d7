"""AgentGateway: Envoy Gateway's GatewayClass (with the EnvoyProxy that keeps its load
balancer internal), and the Gateway whose listener is HTTPS with the configured
certificate, or HTTP without one."""

from __future__ import annotations

import json

import pytest
from component_mocks import Graph, evaluate, priced_both_ways, provider

from components.certificates import route53_policy
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


@pytest.mark.parametrize(
    "tls", [{}, {"secretName": "mine", "issuer": {"ca": {}}}], ids=["neither", "both"]
)
def test_tls_needs_exactly_one_certificate_source(tls: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"tls\n  Value error, set exactly one of secretName"):
        GatewayConfig.model_validate({"tls": tls})


def test_an_issuer_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError, match=r"tls.issuer\n  Value error, set exactly one of ca"):
        GatewayConfig.model_validate({"tls": {"issuer": {}}})
    with pytest.raises(ValueError, match=r"hostedZoneId\n  Field required"):
        GatewayConfig.model_validate({"tls": {"issuer": {"acme": {"email": "ops@example.com"}}}})


CERT_MANAGER = "kubernetes:cert-manager.io/v1"


def test_with_a_ca_issuer_cert_manager_issues_the_listeners_certificate() -> None:
    _, graph = _gateway({"host": "agents.example.internal", "tls": {"issuer": {"ca": {}}}})
    (listener,) = graph.named(f"{GATEWAY_API}:Gateway", "agent-gateway-gateway").inputs["spec"][
        "listeners"
    ]
    assert listener["protocol"] == "HTTPS"
    secret = listener["tls"]["certificateRefs"][0]["name"]
    leaf = graph.named(f"{CERT_MANAGER}:Certificate", "agent-gateway-tls-certificate").inputs
    assert leaf["metadata"]["namespace"] == "agents"
    assert leaf["spec"]["secretName"] == secret
    assert leaf["spec"]["dnsNames"] == ["agents.example.internal"]
    assert leaf["spec"]["privateKey"]["algorithm"] == "ECDSA"
    # Signed by the stack's own CA (a namespaced Issuer), whose root is self-signed.
    ref = leaf["spec"]["issuerRef"]
    assert ref["kind"] == "Issuer"
    ca_issuer = graph.named(f"{CERT_MANAGER}:Issuer", "agent-gateway-tls-ca-issuer").inputs
    assert ca_issuer["metadata"]["name"] == ref["name"]
    root = graph.named(f"{CERT_MANAGER}:Certificate", "agent-gateway-tls-ca").inputs["spec"]
    assert root["isCA"] is True
    assert root["secretName"] == ca_issuer["spec"]["ca"]["secretName"]
    selfsigned = graph.named(f"{CERT_MANAGER}:Issuer", "agent-gateway-tls-root-issuer").inputs
    assert selfsigned["spec"] == {"selfSigned": {}}
    assert root["issuerRef"]["name"] == selfsigned["metadata"]["name"]
    assert not graph.of_type(f"{CERT_MANAGER}:ClusterIssuer")


def test_with_an_acme_issuer_dns01_runs_in_the_configured_route53_zone() -> None:
    gateway_config = GatewayConfig.model_validate(
        {
            "enabled": True,
            "host": "agents.example.com",
            "tls": {"issuer": {"acme": {"email": "ops@example.com", "hostedZoneId": "Z0123ABC"}}},
        }
    )

    def program() -> AgentGateway:
        return AgentGateway(
            "agent-gateway",
            AgentGatewayArgs(
                namespace="agents", provider=provider(), config=gateway_config, region="us-east-1"
            ),
        )

    _, graph = evaluate(program)
    issuer = graph.named(f"{CERT_MANAGER}:ClusterIssuer", "agent-gateway-tls-acme-issuer").inputs
    assert issuer["metadata"]["name"] == "agents-acme"
    (solver,) = issuer["spec"]["acme"]["solvers"]
    assert solver["dns01"] == {"route53": {"region": "us-east-1", "hostedZoneID": "Z0123ABC"}}
    assert solver["selector"] == {"dnsNames": ["agents.example.com"]}
    assert issuer["spec"]["acme"]["email"] == "ops@example.com"
    leaf = graph.named(f"{CERT_MANAGER}:Certificate", "agent-gateway-tls-certificate").inputs
    assert leaf["spec"]["issuerRef"] == {
        "group": "cert-manager.io",
        "kind": "ClusterIssuer",
        "name": "agents-acme",
    }
    assert not graph.of_type(f"{CERT_MANAGER}:Issuer")


def test_the_dns01_role_changes_only_the_challenge_record_in_its_zone() -> None:
    policy = json.loads(route53_policy("Z0123ABC", "Agents.Example.com"))
    changes = [s for s in policy["Statement"] if s["Action"] == "route53:ChangeResourceRecordSets"]
    (change,) = changes
    assert change["Resource"] == "arn:aws:route53:::hostedzone/Z0123ABC"
    condition = change["Condition"]["ForAllValues:StringEquals"]
    assert condition["route53:ChangeResourceRecordSetsNormalizedRecordNames"] == [
        "_acme-challenge.agents.example.com"
    ]
    assert condition["route53:ChangeResourceRecordSetsRecordTypes"] == ["TXT"]
    # No statement reaches another zone.
    zones = {s["Resource"] for s in policy["Statement"]} - {"arn:aws:route53:::change/*"}
    assert zones == {"arn:aws:route53:::hostedzone/Z0123ABC"}
