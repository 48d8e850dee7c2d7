"""ClusterOperators: a pinned Helm release per enabled operator, each fenced by a
NetworkPolicy that admits only its own ports."""

from __future__ import annotations

import pytest
from component_mocks import evaluate, provider

from components.operators import ClusterOperators, ClusterOperatorsArgs, OperatorsConfig

OPERATORS = "agent-platform:operators:ClusterOperators"


def test_each_enabled_operator_gets_its_release_and_ingress_policy() -> None:
    config = OperatorsConfig.model_validate(
        {
            "keda": {"enabled": True, "chartVersion": "2.16.0"},
            "envoyGateway": {"enabled": True, "chartVersion": "v1.7.0"},
        }
    )

    def program() -> ClusterOperators:
        return ClusterOperators(
            "operators", ClusterOperatorsArgs(config=config, provider=provider())
        )

    operators, graph = evaluate(program)
    component = graph.component(OPERATORS)
    assert graph.kinds(component) == [
        ("kubernetes:helm.sh/v3:Release", "operators-envoy-gateway"),
        ("kubernetes:helm.sh/v3:Release", "operators-keda"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "operators-envoy-gateway-ingress"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "operators-keda-ingress"),
    ]
    keda = graph.named("kubernetes:helm.sh/v3:Release", "operators-keda").inputs
    assert (keda["chart"], keda["version"], keda["namespace"]) == ("keda", "2.16.0", "keda")
    assert keda["repositoryOpts"] == {"repo": "https://kedacore.github.io/charts"}
    envoy = graph.named("kubernetes:helm.sh/v3:Release", "operators-envoy-gateway").inputs
    # An OCI chart: the reference names the chart, no repository.
    assert (envoy["chart"], envoy["version"], envoy["namespace"]) == (
        "oci://docker.io/envoyproxy/gateway-helm",
        "v1.7.0",
        "envoy-gateway-system",
    )
    assert "repositoryOpts" not in envoy
    policy = graph.named(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy", "operators-keda-ingress"
    ).inputs
    assert policy["spec"]["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": 6443}, {"protocol": "TCP", "port": 9443}]}
    ]
    proxies = graph.named(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy", "operators-envoy-gateway-ingress"
    ).inputs
    ports = {p["port"] for p in proxies["spec"]["ingress"][0]["ports"]}
    # The proxies' HTTP and HTTPS listeners (80 and 443 shifted by 10000) and xDS.
    assert {10080, 10443, 18000} <= ports
    assert operators.gateway_namespace == "envoy-gateway-system"
    assert graph.outputs_of(component) == {"releases": ["keda", "envoy_gateway"]}


def test_a_release_needs_its_chart_version() -> None:
    with pytest.raises(ValueError, match=r"keda.chartVersion\n  Field required"):
        OperatorsConfig.model_validate({"keda": {"enabled": True}})


def test_ingress_nginx_is_gone() -> None:
    with pytest.raises(ValueError, match="ingressNginx"):
        OperatorsConfig.model_validate({"ingressNginx": {"enabled": True, "chartVersion": "4"}})


def _cert_manager(role_arn: str | None) -> dict[str, object]:
    config = OperatorsConfig.model_validate(
        {"certManager": {"enabled": True, "chartVersion": "v1.21.2"}}
    )

    def program() -> ClusterOperators:
        return ClusterOperators(
            "operators",
            ClusterOperatorsArgs(
                config=config, provider=provider(), cert_manager_role_arn=role_arn
            ),
        )

    _, graph = evaluate(program)
    release: dict[str, object] = graph.named(
        "kubernetes:helm.sh/v3:Release", "operators-cert-manager"
    ).inputs
    return release


def test_cert_manager_is_a_pinned_oci_chart_with_its_crds_on_the_system_nodes() -> None:
    release = _cert_manager(None)
    assert (release["chart"], release["version"], release["namespace"]) == (
        "oci://quay.io/jetstack/charts/cert-manager",
        "v1.21.2",
        "cert-manager",
    )
    assert "repositoryOpts" not in release
    values = release["values"]
    assert isinstance(values, dict)
    assert values["crds"] == {"enabled": True, "keep": True}
    # Every pod the chart runs: restricted, and on the managed system pool (never on a
    # node Karpenter may remove).
    for pod in (values, values["webhook"], values["cainjector"], values["startupapicheck"]):
        assert pod["nodeSelector"] == {"agent-platform.io/node-pool": "system"}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = pod["containerSecurityContext"]
        assert container["allowPrivilegeEscalation"] is False
        assert container["capabilities"] == {"drop": ["ALL"]}
    assert "serviceAccount" not in values


def test_cert_manager_assumes_the_given_role_through_irsa() -> None:
    values = _cert_manager("arn:aws:iam::123456789012:role/cert-manager")["values"]
    assert isinstance(values, dict)
    assert values["serviceAccount"] == {
        "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/cert-manager"}
    }
    # The non-root controller reads the projected web identity token through its group.
    assert values["securityContext"]["fsGroup"] == 1001
    assert values["securityContext"]["runAsNonRoot"] is True
