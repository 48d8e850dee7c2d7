"""PlatformNamespace: the Namespace with Pod Security labels and a default-deny policy."""

from __future__ import annotations

import pytest
from component_mocks import evaluate, provider

from components.namespace import PlatformNamespace, PlatformNamespaceArgs

NAMESPACE = "agent-platform:namespace:PlatformNamespace"


def test_a_namespace_with_pod_security_labels_and_default_deny_both_ways() -> None:
    _, graph = evaluate(
        lambda: PlatformNamespace(
            "gpu",
            PlatformNamespaceArgs(
                name="gpu-system", provider=provider(), pod_security="privileged"
            ),
        )
    )
    component = graph.component(NAMESPACE)
    assert graph.kinds(component) == [
        ("kubernetes:core/v1:Namespace", "gpu-ns"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "gpu-default-deny"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "gpu-default-deny-egress"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "gpu-dns"),
    ]
    namespace = graph.named("kubernetes:core/v1:Namespace", "gpu-ns")
    labels = namespace.inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/warn"] == "privileged"
    deny = graph.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", "gpu-default-deny")
    assert deny.inputs["metadata"] == {"name": "default-deny-ingress", "namespace": "gpu-system"}
    # Selecting every pod and allowing no ingress: the rest are explicit allows.
    assert deny.inputs["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    egress = graph.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", "gpu-default-deny-egress")
    assert egress.inputs["spec"] == {"podSelector": {}, "policyTypes": ["Egress"]}
    # Names still resolve: every pod may reach the cluster DNS, and nothing else.
    (dns,) = graph.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", "gpu-dns").inputs["spec"][
        "egress"
    ]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert graph.outputs_of(component) == {"name": "gpu-system"}


@pytest.mark.parametrize("name", ["Agents", "-agents", "a" * 64, "agents_1"])
def test_the_name_must_be_a_dns_label(name: str) -> None:
    k8s_provider, _ = evaluate(provider)
    with pytest.raises(ValueError, match=r"name\n  String should match pattern"):
        PlatformNamespaceArgs(name=name, provider=k8s_provider)
