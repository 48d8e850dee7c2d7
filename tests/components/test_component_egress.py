"""WorkloadEgress: one workload's egress NetworkPolicy, never towards the metadata service."""

from __future__ import annotations

import pytest
from component_mocks import evaluate, provider

from components.egress import Addresses, Internet, Pods, WorkloadEgress, WorkloadEgressArgs

NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def test_each_destination_becomes_one_egress_rule() -> None:
    def program() -> WorkloadEgress:
        return WorkloadEgress(
            "worker-egress",
            WorkloadEgressArgs(
                namespace="agents",
                app="agent-worker",
                to=[
                    Pods(app="redis", ports=[6379]),
                    Pods(app="dcgm-exporter-gpu", namespace="gpu-system", ports=[9400]),
                    Addresses(cidrs=["10.40.0.0/16"], ports=[6379]),
                    Internet(ports=[443]),
                ],
                provider=provider(),
            ),
        )

    _, graph = evaluate(program)
    (policy,) = graph.of_type(NETPOL)
    spec = policy.inputs["spec"]
    assert policy.inputs["metadata"]["name"] == "agent-worker-egress"
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "agent-worker"}}
    assert spec["policyTypes"] == ["Egress"]
    redis, dcgm, vpc, internet = spec["egress"]
    assert redis["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis"}}}]
    assert redis["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert dcgm["to"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "gpu-system"}
    }
    assert vpc["to"] == [{"ipBlock": {"cidr": "10.40.0.0/16"}}]
    (public,) = internet["to"]
    assert public["ipBlock"]["cidr"] == "0.0.0.0/0"
    # Public addresses only: no private range, and never the link-local block.
    assert set(public["ipBlock"]["except"]) >= {"10.0.0.0/8", "169.254.0.0/16"}


@pytest.mark.parametrize("cidr", ["169.254.169.254/32", "169.254.0.0/16", "0.0.0.0/0"])
def test_an_address_block_with_the_metadata_service_is_refused(cidr: str) -> None:
    with pytest.raises(ValueError, match="includes the instance metadata address"):
        Addresses(cidrs=[cidr], ports=[80])
