from __future__ import annotations

from typing import Any

from policy_fixtures import only, resource, workload

from costing.view import UNKNOWN, ResourceView
from policies.rules.network import (
    LoadBalancerConfig,
    NetworkPolicyConfig,
    check_network_policy_coverage,
    check_public_load_balancer,
)


def network_policy(namespace: str = "agents", selector: Any = None) -> ResourceView:
    return resource(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        f"default-deny-{namespace}",
        {
            "metadata": {"name": f"default-deny-{namespace}", "namespace": namespace},
            "spec": {"podSelector": selector or {}, "policyTypes": ["Ingress"]},
        },
    )


def release(namespace: str = "envoy-gateway-system") -> ResourceView:
    return resource(
        "kubernetes:helm.sh/v3:Release",
        "envoy-gateway",
        {"chart": "oci://docker.io/envoyproxy/gateway-helm", "namespace": namespace},
    )


def envoy_proxy(service: Any = None) -> ResourceView:
    spec: dict[str, Any] = {}
    if service is not None:
        spec["provider"] = {"type": "Kubernetes", "kubernetes": {"envoyService": service}}
    return resource(
        "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy",
        "agent-gateway-envoy-proxy",
        {"metadata": {"name": "agent-api", "namespace": "agents"}, "spec": spec},
    )


def service(annotations: dict[str, str] | None = None, kind: Any = "LoadBalancer") -> ResourceView:
    return resource(
        "kubernetes:core/v1:Service",
        "agent-api",
        {
            "metadata": {
                "name": "agent-api",
                "namespace": "agents",
                "annotations": annotations or {},
            },
            "spec": {"type": kind, "ports": [{"port": 80}]},
        },
    )


def test_default_deny_covers_the_namespace() -> None:
    assert (
        check_network_policy_coverage([workload(), network_policy()], NetworkPolicyConfig()) == []
    )


def test_namespace_without_network_policy() -> None:
    found = only(
        check_network_policy_coverage([workload(), network_policy("other")], NetworkPolicyConfig())
    )
    assert found.resource == "Deployment 'agent-api'"
    assert found.message == (
        "Deployment 'agent-api': no NetworkPolicy in namespace 'agents' selects its pods (labels "
        "{'app.kubernetes.io/name': 'agent-api'}); add one whose spec.podSelector is {} "
        "(default deny) or matches those labels."
    )


def test_policy_selecting_other_pods_does_not_cover() -> None:
    other = network_policy(selector={"matchLabels": {"app.kubernetes.io/name": "redis"}})
    assert only(check_network_policy_coverage([workload(), other], NetworkPolicyConfig()))


def test_helm_release_namespace_needs_a_policy() -> None:
    found = only(check_network_policy_coverage([release()], NetworkPolicyConfig()))
    assert found.resource == "Release 'envoy-gateway'"
    assert found.message == (
        "Release 'envoy-gateway': installs workloads in namespace 'envoy-gateway-system', which "
        "has no "
        "NetworkPolicy with an empty spec.podSelector; add a default-deny NetworkPolicy there "
        "with the chart's required ingress allowed."
    )
    assert (
        check_network_policy_coverage(
            [release(), network_policy("envoy-gateway-system")], NetworkPolicyConfig()
        )
        == []
    )


def test_public_load_balancer_service() -> None:
    found = only(check_public_load_balancer(service(), LoadBalancerConfig()))
    assert found.resource == "Service 'agent-api'"
    assert found.message == (
        "Service 'agent-api': is an internet-facing load balancer (spec.type); annotate it "
        "service.beta.kubernetes.io/aws-load-balancer-scheme: internal, use a ClusterIP behind "
        "the Gateway, or add it to allowed_public."
    )


def test_internal_or_allowlisted_load_balancer_passes() -> None:
    internal = {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}
    assert check_public_load_balancer(service(internal), LoadBalancerConfig()) == []
    allowed = LoadBalancerConfig(allowed_public=("agent-api",))
    assert check_public_load_balancer(service(), allowed) == []
    assert check_public_load_balancer(service(kind="ClusterIP"), LoadBalancerConfig()) == []


def test_an_envoy_proxy_defaults_to_a_public_load_balancer() -> None:
    # No envoyService: Envoy Gateway's default, an internet-facing LoadBalancer Service.
    found = only(check_public_load_balancer(envoy_proxy(), LoadBalancerConfig()))
    assert found.resource == "EnvoyProxy 'agent-api'"
    assert found.message.startswith(
        "EnvoyProxy 'agent-api': is an internet-facing load balancer "
        "(spec.provider.kubernetes.envoyService); annotate it "
        "spec.provider.kubernetes.envoyService.annotations: "
        "service.beta.kubernetes.io/aws-load-balancer-scheme: internal"
    )
    assert only(
        check_public_load_balancer(envoy_proxy({"type": "LoadBalancer"}), LoadBalancerConfig())
    )
    internal = {"annotations": {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}}
    assert check_public_load_balancer(envoy_proxy(internal), LoadBalancerConfig()) == []
    cluster_ip = envoy_proxy({"type": "ClusterIP"})
    assert check_public_load_balancer(cluster_ip, LoadBalancerConfig()) == []


def test_unknown_scheme_may_be_public_so_it_fails() -> None:
    found = only(check_public_load_balancer(envoy_proxy(service=UNKNOWN), LoadBalancerConfig()))
    assert "unknown at preview, so it may be public" in found.message


def test_aws_load_balancer_must_be_internal() -> None:
    lb = resource("aws:lb/loadBalancer:LoadBalancer", "api-alb", {"internal": False})
    found = only(check_public_load_balancer(lb, LoadBalancerConfig()))
    assert found.message == (
        "LoadBalancer 'api-alb': is an internet-facing load balancer (internal); set internal: "
        "true, or add it to allowed_public."
    )
    internal = resource("aws:lb/loadBalancer:LoadBalancer", "api-alb", {"internal": True})
    assert check_public_load_balancer(internal, LoadBalancerConfig()) == []


def test_policy_with_unknown_selector_does_not_count_as_covering() -> None:
    unknown = network_policy()
    unknown.props["spec"]["podSelector"] = UNKNOWN
    found = only(check_network_policy_coverage([workload(), unknown], NetworkPolicyConfig()))
    assert found.resource == "Deployment 'agent-api'"
