"""ClusterOperators: a pinned Helm release per enabled operator, each fenced by a
NetworkPolicy that admits only its own ports."""

from __future__ import annotations

import pytest
from component_mocks import evaluate, priced_both_ways, provider

from components.operators import ClusterOperators, ClusterOperatorsArgs, OperatorsConfig

OPERATORS = "agent-platform:operators:ClusterOperators"


def test_each_enabled_operator_gets_its_release_and_ingress_policy() -> None:
    config = OperatorsConfig.model_validate(
        {
            "keda": {"enabled": True, "chartVersion": "2.16.0"},
            "ingressNginx": {"enabled": True, "chartVersion": "4.11.3"},
        }
    )

    def program() -> ClusterOperators:
        return ClusterOperators(
            "operators", ClusterOperatorsArgs(config=config, provider=provider())
        )

    operators, graph = evaluate(program)
    component = graph.component(OPERATORS)
    assert graph.kinds(component) == [
        ("kubernetes:helm.sh/v3:Release", "operators-ingress-nginx"),
        ("kubernetes:helm.sh/v3:Release", "operators-keda"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "operators-ingress-nginx-ingress"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "operators-keda-ingress"),
    ]
    keda = graph.named("kubernetes:helm.sh/v3:Release", "operators-keda").inputs
    assert (keda["chart"], keda["version"], keda["namespace"]) == ("keda", "2.16.0", "keda")
    nginx = graph.named("kubernetes:helm.sh/v3:Release", "operators-ingress-nginx").inputs
    annotations = nginx["values"]["controller"]["service"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    policy = graph.named(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy", "operators-keda-ingress"
    ).inputs
    assert policy["spec"]["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": 6443}, {"protocol": "TCP", "port": 9443}]}
    ]
    assert operators.ingress_namespace == "ingress-nginx"
    assert graph.outputs_of(component) == {"releases": ["keda", "ingress_nginx"]}


def test_a_release_needs_its_chart_version() -> None:
    with pytest.raises(ValueError, match=r"keda.chartVersion\n  Field required"):
        OperatorsConfig.model_validate({"keda": {"enabled": True}})


@pytest.mark.parametrize("ingress", [True, False])
def test_the_bill_is_the_ingress_controllers_network_load_balancer(ingress: bool) -> None:
    config = OperatorsConfig.model_validate(
        {
            "keda": {"enabled": True, "chartVersion": "2.16.0"},
            "ingressNginx": {"enabled": ingress, "chartVersion": "4.11.3"},
        }
    )

    def program() -> ClusterOperators:
        return ClusterOperators(
            "operators", ClusterOperatorsArgs(config=config, provider=provider())
        )

    operators, graph = evaluate(program)
    declared, registered = priced_both_ways(operators.bill, graph)
    assert declared == registered
    balancers = [i["item"] for i in declared["items"] if i["item"].startswith("Load balancer")]
    assert balancers == (["Load balancer 'operators-ingress-nginx' (network)"] if ingress else [])
