"""Egress rules: a default deny per workload namespace, and the metadata service closed."""

from __future__ import annotations

from typing import Any

import pytest
from policy_fixtures import only, real, resource, workload

from costing.view import ResourceView
from policies.rule import NoConfig
from policies.rules.egress import check_egress_default_deny, check_no_instance_metadata_egress

NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def policy(name: str, spec: dict[str, Any], namespace: str = "agents") -> ResourceView:
    return resource(
        NETPOL, name, {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
    )


DENY_EGRESS = {"podSelector": {}, "policyTypes": ["Egress"]}


def test_a_namespace_that_denies_egress_passes() -> None:
    found = check_egress_default_deny([workload(), policy("deny", DENY_EGRESS)], NoConfig())
    assert found == []


@pytest.mark.parametrize(
    "spec",
    [
        {"podSelector": {}, "policyTypes": ["Ingress"]},  # ingress only
        {"podSelector": {"matchLabels": {"a": "b"}}, "policyTypes": ["Egress"]},  # some pods
        {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": []}]},  # allows all
    ],
    ids=["ingress-only", "some-pods", "allows-all"],
)
def test_a_namespace_without_a_default_egress_deny_fails(spec: dict[str, Any]) -> None:
    found = only(check_egress_default_deny([workload(), policy("p", spec)], NoConfig()))
    assert "namespace 'agents' has no default-deny egress NetworkPolicy" in found.message


def test_the_deny_must_be_in_the_workloads_namespace() -> None:
    found = check_egress_default_deny(
        [workload(namespace="agents"), policy("deny", DENY_EGRESS, namespace="other")], NoConfig()
    )
    assert len(real(found)) == 1


def _egress(*rules: dict[str, Any]) -> ResourceView:
    return policy(
        "worker-egress", {"podSelector": {}, "policyTypes": ["Egress"], "egress": list(rules)}
    )


def test_public_addresses_without_link_local_pass() -> None:
    public = {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.0.0/16"]}}
    pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis"}}}
    found = check_no_instance_metadata_egress(
        _egress({"to": [public], "ports": [{"port": 443}]}, {"to": [pods]}), NoConfig()
    )
    assert found == []


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}, "spec.egress[0].to[0].ipBlock includes"),
        ({"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]}, "includes 169.254.169.254"),
        (
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.0/30"]}}]},
            "includes 169.254.169.254",
        ),
        ({"ports": [{"port": 80}]}, "spec.egress[0] has no 'to'"),
    ],
    ids=["world", "exact", "wrong-except", "no-to"],
)
def test_egress_that_reaches_the_metadata_service_fails(rule: dict[str, Any], message: str) -> None:
    found = only(check_no_instance_metadata_egress(_egress(rule), NoConfig()))
    assert message in found.message
