"""LocalCluster: render providers for manifests and, apart, Secrets; or one context."""

from __future__ import annotations

import pytest
from component_mocks import evaluate

from components.local_cluster import LocalCluster, LocalClusterArgs

LOCAL = "agent-platform:cluster:LocalCluster"


def test_rendering_keeps_secret_manifests_in_their_own_directory() -> None:
    args = LocalClusterArgs(render_directory="out/manifests", secrets_directory="out/secrets")
    cluster, graph = evaluate(lambda: LocalCluster("local", args))
    component = graph.component(LOCAL)
    assert graph.kinds(component) == [
        ("pulumi:providers:kubernetes", "local-render"),
        ("pulumi:providers:kubernetes", "local-render-secrets"),
    ]
    render = graph.named("pulumi:providers:kubernetes", "local-render").inputs
    secrets = graph.named("pulumi:providers:kubernetes", "local-render-secrets").inputs
    assert render["renderYamlToDirectory"] == "out/manifests"
    assert secrets["renderYamlToDirectory"] == "out/secrets"
    assert cluster.provider is not cluster.secrets_provider
    assert graph.outputs_of(component)["clusterName"] == "local (rendered)"


def test_a_kubeconfig_context_serves_both() -> None:
    args = LocalClusterArgs(kubeconfig_context="kind-agents")
    cluster, graph = evaluate(lambda: LocalCluster("local", args))
    component = graph.component(LOCAL)
    assert graph.kinds(component) == [("pulumi:providers:kubernetes", "local-context")]
    assert graph.named("pulumi:providers:kubernetes", "local-context").inputs["context"] == (
        "kind-agents"
    )
    assert cluster.provider is cluster.secrets_provider
    assert graph.outputs_of(component)["clusterName"] == "kind-agents"


def test_secrets_never_render_beside_the_shared_manifests() -> None:
    with pytest.raises(ValueError, match="secrets_directory must differ from render_directory"):
        LocalClusterArgs(render_directory="out", secrets_directory="out")
    # With a context nothing is rendered, so the directories do not matter.
    LocalClusterArgs(render_directory="out", secrets_directory="out", kubeconfig_context="kind")
