"""Egress: workload namespaces deny it by default, and no policy opens the instance
metadata service (the node's AWS credentials) to a pod."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from costing.view import UNKNOWN, ResourceView, dig
from policies.rule import NoConfig, ResourceRule, Rule, StackRule
from policies.violation import Violation, undetermined, violation
from policies.workloads import NETWORK_POLICY, is_pod_bearing

EGRESS_DENY = "egress-default-deny"
NO_IMDS = "no-instance-metadata-egress"
INSTANCE_METADATA = ipaddress.ip_address("169.254.169.254")


def _denies_egress(policy: ResourceView) -> bool:
    """Selects every pod, governs egress, and allows none."""
    spec = policy.get("spec")
    if not isinstance(spec, dict):
        return False
    return (
        spec.get("podSelector") in (None, {})
        and "Egress" in (spec.get("policyTypes") or [])
        and not spec.get("egress")
    )


def check_egress_default_deny(resources: Sequence[ResourceView], _cfg: NoConfig) -> list[Violation]:
    denied = {p.namespace for p in resources if p.type == NETWORK_POLICY and _denies_egress(p)}
    found: list[Violation] = []
    reported: set[Any] = set()
    for workload in (r for r in resources if is_pod_bearing(r)):
        namespace = workload.namespace
        if namespace is UNKNOWN:
            found.append(undetermined(EGRESS_DENY, workload, "namespace unknown."))
        elif namespace not in denied and namespace not in reported:
            reported.add(namespace)
            found.append(
                violation(
                    EGRESS_DENY,
                    workload,
                    f"namespace '{namespace}' has no default-deny egress NetworkPolicy "
                    "(spec.podSelector {}, spec.policyTypes [Egress], no spec.egress); add "
                    "one, then allow each workload only the egress it needs.",
                )
            )
    return found


def _opens_metadata(peer: Any) -> bool | None:
    """Whether a peer of an egress rule includes the metadata address (None: unknown)."""
    block = dig(peer, "ipBlock")
    if block is None:
        return False  # pod and namespace selectors reach pods, never the node's link-local
    cidr = dig(block, "cidr")
    if not isinstance(cidr, str):
        return None
    if INSTANCE_METADATA not in ipaddress.ip_network(cidr, strict=False):
        return False
    excepted = dig(block, "except") or []
    if not isinstance(excepted, list):
        return None
    return not any(
        isinstance(e, str) and INSTANCE_METADATA in ipaddress.ip_network(e, strict=False)
        for e in excepted
    )


def check_no_instance_metadata_egress(resource: ResourceView, _cfg: NoConfig) -> list[Violation]:
    if resource.type != NETWORK_POLICY:
        return []
    rules = resource.get("spec", "egress")
    if rules is UNKNOWN:
        return [undetermined(NO_IMDS, resource, "egress rules unknown at preview.")]
    found: list[Violation] = []
    for index, rule in enumerate(rules or []):
        where = f"spec.egress[{index}]"
        peers = dig(rule, "to")
        if not peers:
            found.append(
                violation(
                    NO_IMDS,
                    resource,
                    f"{where} has no 'to': it allows every address, the instance metadata "
                    "service 169.254.169.254 included; name the destinations.",
                )
            )
            continue
        for position, peer in enumerate(peers):
            opens = _opens_metadata(peer)
            if opens is None:
                found.append(undetermined(NO_IMDS, resource, f"{where}.to[{position}] unknown."))
            elif opens:
                found.append(
                    violation(
                        NO_IMDS,
                        resource,
                        f"{where}.to[{position}].ipBlock includes 169.254.169.254 (the "
                        "instance metadata service); add 169.254.0.0/16 to its except list.",
                    )
                )
    return found


RULES: list[Rule] = [
    StackRule(
        EGRESS_DENY,
        "Every namespace that runs workloads denies egress by default.",
        "mandatory",
        NoConfig,
        check_egress_default_deny,
        "A workload whose namespace is unknown is skipped with an advisory note.",
    ),
    ResourceRule(
        NO_IMDS,
        "No NetworkPolicy lets pods reach the instance metadata service (169.254.169.254).",
        "mandatory",
        NoConfig,
        check_no_instance_metadata_egress,
        "An unknown egress rule or peer is skipped with an advisory note.",
    ),
]
