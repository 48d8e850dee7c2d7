"""The traffic rules: TLS on every listener in prod, and canary routes whose weights
stay within 0..100 with a stable backend taking traffic."""

from __future__ import annotations

from typing import Any

import pytest
from policy_fixtures import only, real, resource

from costing.view import UNKNOWN, ResourceView
from policies.rules.gateway import (
    ListenerTlsConfig,
    RouteWeightsConfig,
    check_listener_tls,
    check_route_weights,
)

HTTPS = {
    "name": "https",
    "protocol": "HTTPS",
    "port": 443,
    "tls": {"certificateRefs": [{"kind": "Secret", "name": "agent-api-tls"}]},
}
HTTP = {"name": "http", "protocol": "HTTP", "port": 80}


def gateway(*listeners: dict[str, Any], addresses: Any = None) -> ResourceView:
    spec: dict[str, Any] = {"gatewayClassName": "agents-agent-api", "listeners": list(listeners)}
    if addresses is not None:
        spec["addresses"] = addresses
    return resource(
        "kubernetes:gateway.networking.k8s.io/v1:Gateway",
        "agent-gateway-gateway",
        {"metadata": {"name": "agent-api", "namespace": "agents"}, "spec": spec},
    )


def route(*backends: dict[str, Any]) -> ResourceView:
    return resource(
        "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
        "agent-route",
        {
            "metadata": {"name": "agent-api", "namespace": "agents"},
            "spec": {
                "parentRefs": [{"name": "agent-api"}],
                "rules": [{"backendRefs": list(backends)}],
            },
        },
    )


def test_an_https_gateway_passes() -> None:
    assert check_listener_tls(gateway(HTTPS), ListenerTlsConfig()) == []
    tls_passthrough = {"name": "tls", "protocol": "TLS", "port": 8443}
    assert check_listener_tls(gateway(tls_passthrough), ListenerTlsConfig()) == []


def test_a_clear_text_listener_fails_even_beside_https() -> None:
    found = only(check_listener_tls(gateway(HTTPS, HTTP), ListenerTlsConfig()))
    assert found.resource == "Gateway 'agent-api'"
    assert found.message == (
        "Gateway 'agent-api': spec.listeners[1] ('http') serves HTTP without TLS; make it "
        "HTTPS with tls.certificateRefs."
    )


def test_a_loopback_only_gateway_may_serve_http() -> None:
    loopback = [{"type": "IPAddress", "value": "127.0.0.1"}]
    assert check_listener_tls(gateway(HTTP, addresses=loopback), ListenerTlsConfig()) == []
    internal = [{"type": "IPAddress", "value": "10.0.1.5"}]
    assert only(check_listener_tls(gateway(HTTP, addresses=internal), ListenerTlsConfig()))
    named = [{"type": "Hostname", "value": "localhost"}]
    assert only(check_listener_tls(gateway(HTTP, addresses=named), ListenerTlsConfig()))


def test_an_ingress_needs_tls() -> None:
    ingress = resource(
        "kubernetes:networking.k8s.io/v1:Ingress",
        "api",
        {"metadata": {"name": "api"}, "spec": {"rules": []}},
    )
    assert "has no spec.tls" in only(check_listener_tls(ingress, ListenerTlsConfig())).message
    with_tls = resource(
        "kubernetes:networking.k8s.io/v1:Ingress",
        "api",
        {"metadata": {"name": "api"}, "spec": {"tls": [{"secretName": "api-tls"}]}},
    )
    assert check_listener_tls(with_tls, ListenerTlsConfig()) == []


def test_listener_tls_is_off_where_the_stack_says_so() -> None:
    assert check_listener_tls(gateway(HTTP), ListenerTlsConfig(require_tls=False)) == []


def test_an_unknown_protocol_may_be_clear_text() -> None:
    unknown = {"name": "web", "protocol": UNKNOWN, "port": 443}
    assert only(check_listener_tls(gateway(unknown), ListenerTlsConfig()))


def test_a_canary_route_within_range_passes() -> None:
    split = route(
        {"name": "agent-api-stable", "port": 80, "weight": 90},
        {"name": "agent-api-canary", "port": 80, "weight": 10},
    )
    assert check_route_weights(split, RouteWeightsConfig()) == []
    # As the engine hands them over: protobuf numbers are floats.
    as_floats = route(
        {"name": "agent-api-stable", "weight": 90.0}, {"name": "agent-api-canary", "weight": 10.0}
    )
    assert check_route_weights(as_floats, RouteWeightsConfig()) == []
    fraction = route({"name": "agent-api-stable", "weight": 99.5})
    assert "outside 0..100" in only(check_route_weights(fraction, RouteWeightsConfig())).message
    # Gateway API's default weight is 1: a backend without one takes traffic.
    assert check_route_weights(route({"name": "agent-api-stable"}), RouteWeightsConfig()) == []


@pytest.mark.parametrize("weight", [101, -1])
def test_a_weight_outside_0_to_100_fails(weight: int) -> None:
    split = route(
        {"name": "agent-api-stable", "weight": 100},
        {"name": "agent-api-canary", "weight": weight},
    )
    found = only(check_route_weights(split, RouteWeightsConfig()))
    assert found.message == (
        f"HTTPRoute 'agent-api': spec.rules[0].backendRefs has weights [{weight}] outside "
        "0..100; a canary's share is a percentage."
    )


def test_a_route_without_a_stable_backend_taking_traffic_fails() -> None:
    only_canary = route({"name": "agent-api-canary", "weight": 100})
    found = only(check_route_weights(only_canary, RouteWeightsConfig()))
    assert "no stable backend with a weight above 0" in found.message
    drained = route(
        {"name": "agent-api-stable", "weight": 0}, {"name": "agent-api-canary", "weight": 100}
    )
    assert only(check_route_weights(drained, RouteWeightsConfig()))
    renamed = RouteWeightsConfig(canary_suffix="-next")
    assert check_route_weights(only_canary, renamed) == []


def test_unknown_backends_are_a_note_not_a_failure() -> None:
    unknown = route({"name": UNKNOWN, "weight": 10})
    found = check_route_weights(unknown, RouteWeightsConfig())
    assert found
    assert real(found) == []


def test_an_https_listener_without_a_certificate_fails() -> None:
    no_refs = {"name": "https", "protocol": "HTTPS", "port": 443, "tls": {"mode": "Terminate"}}
    found = only(check_listener_tls(gateway(no_refs), ListenerTlsConfig()))
    assert "spec.listeners[0] ('https') is HTTPS with no tls.certificateRefs" in found.message


def test_a_certificate_from_cert_manager_or_your_own_both_pass() -> None:
    # Your own Secret, or a cert-manager Certificate's: the listener names it either way.
    assert check_listener_tls(gateway(HTTPS), ListenerTlsConfig()) == []
    # The gateway-shim form: an annotated Gateway whose listener names the Secret the
    # shim's Certificate writes.
    shim = resource(
        "kubernetes:gateway.networking.k8s.io/v1:Gateway",
        "agent-gateway-gateway",
        {
            "metadata": {
                "name": "agent-api",
                "namespace": "agents",
                "annotations": {"cert-manager.io/cluster-issuer": "agents-acme"},
            },
            "spec": {"gatewayClassName": "agents-agent-api", "listeners": [HTTPS]},
        },
    )
    assert check_listener_tls(shim, ListenerTlsConfig()) == []


def test_unknown_certificate_refs_are_undetermined() -> None:
    unknown = {
        "name": "https",
        "protocol": "HTTPS",
        "port": 443,
        "tls": {"certificateRefs": UNKNOWN},
    }
    (found,) = check_listener_tls(gateway(unknown), ListenerTlsConfig())
    assert "unknown" in found.message
    assert found.undetermined
