"""Traffic: listeners that carry requests terminate TLS, and a canary route keeps its
weights in range with a stable backend taking traffic."""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import StrictBool

from costing.view import UNKNOWN, ResourceView, dig
from policies.rule import ResourceRule, Rule, RuleConfig
from policies.violation import Violation, undetermined, violation

GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"

LISTENER_TLS = "listener-tls"
ROUTE_WEIGHTS = "canary-route-weights"

_TLS_PROTOCOLS = {"HTTPS", "TLS"}


class ListenerTlsConfig(RuleConfig):
    # Off where no tenant key crosses a network (a laptop's cluster); on in prod.
    require_tls: StrictBool = True


def _loopback_only(addresses: Any) -> bool:
    """Whether a Gateway asks only for loopback addresses: nothing off the host reaches
    it. No addresses means the implementation's load balancer: not loopback."""
    if not isinstance(addresses, list) or not addresses:
        return False
    for address in addresses:
        value = dig(address, "value")
        try:
            if not isinstance(value, str) or not ipaddress.ip_address(value).is_loopback:
                return False
        except ValueError:
            return False  # a hostname or a named address: reachable from elsewhere
    return True


def _certificate_problems(resource: ResourceView, index: int, listener: Any) -> list[Violation]:
    """An HTTPS listener terminates TLS, so it names the Secret holding its certificate:
    one the stack's owner provides, or one cert-manager writes (from a Certificate, or
    the gateway-shim's, which reads the same `certificateRefs`); either form passes."""
    refs = dig(listener, "tls", "certificateRefs")
    where = f"spec.listeners[{index}] ('{dig(listener, 'name')}')"
    if refs is UNKNOWN:
        return [undetermined(LISTENER_TLS, resource, f"{where} tls.certificateRefs unknown.")]
    if not isinstance(refs, list) or not refs:
        return [
            violation(
                LISTENER_TLS,
                resource,
                f"{where} is HTTPS with no tls.certificateRefs: it has no certificate to "
                "serve; name a kubernetes.io/tls Secret (your own, or a cert-manager "
                "Certificate's secretName).",
            )
        ]
    return []


def check_listener_tls(resource: ResourceView, cfg: ListenerTlsConfig) -> list[Violation]:
    if not cfg.require_tls:
        return []
    if resource.type == GATEWAY:
        if _loopback_only(resource.get("spec", "addresses")):
            return []
        listeners = resource.get("spec", "listeners")
        if listeners is UNKNOWN:
            return [violation(LISTENER_TLS, resource, "spec.listeners is unknown at preview.")]
        found = []
        for index, listener in enumerate(listeners if isinstance(listeners, list) else []):
            protocol = dig(listener, "protocol")
            if protocol == "HTTPS":
                found += _certificate_problems(resource, index, listener)
            elif protocol is UNKNOWN or protocol not in _TLS_PROTOCOLS:
                found.append(
                    violation(
                        LISTENER_TLS,
                        resource,
                        f"spec.listeners[{index}] ('{dig(listener, 'name')}') serves "
                        f"{protocol} without TLS; make it HTTPS with tls.certificateRefs.",
                    )
                )
        return found
    if resource.type == INGRESS:
        tls = resource.get("spec", "tls")
        if tls is UNKNOWN:
            return [violation(LISTENER_TLS, resource, "spec.tls is unknown at preview.")]
        if not tls:
            return [
                violation(
                    LISTENER_TLS,
                    resource,
                    "has no spec.tls: its controller serves it in clear text; add spec.tls "
                    "with a certificate Secret.",
                )
            ]
    return []


class RouteWeightsConfig(RuleConfig):
    # What names a canary Service (components/agent_service.py names tracks' Services).
    canary_suffix: str = "-canary"


def _weight(backend: Any) -> Any:
    weight = dig(backend, "weight")
    if weight is None:
        return 1  # Gateway API's default weight
    # The engine hands numbers over as protobuf Struct numbers, which are all floats.
    if isinstance(weight, float) and weight.is_integer():
        return int(weight)
    return weight


def check_route_weights(resource: ResourceView, cfg: RouteWeightsConfig) -> list[Violation]:
    if resource.type != HTTP_ROUTE:
        return []
    rules = resource.get("spec", "rules")
    if rules is UNKNOWN:
        return [undetermined(ROUTE_WEIGHTS, resource, "spec.rules unknown at preview.")]
    found: list[Violation] = []
    for index, rule in enumerate(rules if isinstance(rules, list) else []):
        backends = dig(rule, "backendRefs")
        if backends is UNKNOWN:
            found.append(undetermined(ROUTE_WEIGHTS, resource, f"rules[{index}] unknown."))
            continue
        if not isinstance(backends, list) or not backends:
            continue  # a redirect or other filter-only rule has no backends to weigh
        where = f"spec.rules[{index}].backendRefs"
        weights = [_weight(b) for b in backends]
        names = [dig(b, "name") for b in backends]
        if UNKNOWN in weights or UNKNOWN in names:
            found.append(undetermined(ROUTE_WEIGHTS, resource, f"{where} unknown at preview."))
            continue
        out_of_range = [w for w in weights if not isinstance(w, int) or not 0 <= w <= 100]
        if out_of_range:
            found.append(
                violation(
                    ROUTE_WEIGHTS,
                    resource,
                    f"{where} has weights {out_of_range} outside 0..100; a canary's share "
                    "is a percentage.",
                )
            )
        stable = [
            weight
            for name, weight in zip(names, weights, strict=True)
            if isinstance(name, str) and not name.endswith(cfg.canary_suffix)
        ]
        if not any(isinstance(w, int | float) and w > 0 for w in stable):
            found.append(
                violation(
                    ROUTE_WEIGHTS,
                    resource,
                    f"{where} has no stable backend with a weight above 0 (only "
                    f"'*{cfg.canary_suffix}' Services take traffic); keep the stable "
                    "Service in the route, or promote the canary to stable.",
                )
            )
    return found


RULES: list[Rule] = [
    ResourceRule(
        LISTENER_TLS,
        "Every Gateway listener (unless the Gateway asks only for loopback addresses) and "
        "every Ingress terminates TLS; an HTTPS listener names its certificate's Secret.",
        "mandatory",
        ListenerTlsConfig,
        check_listener_tls,
        "Fails: an unknown listener protocol or Ingress TLS may be clear text.",
    ),
    ResourceRule(
        ROUTE_WEIGHTS,
        "Every HTTPRoute rule's backend weights are within 0..100 and a stable (non-canary) "
        "backend takes traffic.",
        "mandatory",
        RouteWeightsConfig,
        check_route_weights,
        "Unknown backends or weights are skipped with an advisory note.",
    ),
]
