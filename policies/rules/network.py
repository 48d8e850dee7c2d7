"""Network exposure: NetworkPolicies cover workloads, load balancers stay internal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import StrictBool

from costing.kinds import AWS_LB, ENVOY_PROXY, HELM_RELEASE, SERVICE, envoy_proxy_service
from costing.view import UNKNOWN, ResourceView, dig, name_matches
from policies.rule import ResourceRule, Rule, RuleConfig, StackRule
from policies.violation import Violation, undetermined, violation
from policies.workloads import NETWORK_POLICY, is_pod_bearing, pod_labels

NETPOL = "network-policy-coverage"
PUBLIC_LB = "no-public-load-balancer"

_INTERNAL_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
}


class NetworkPolicyConfig(RuleConfig):
    # Helm charts create workloads the pack cannot see; their namespace needs a policy too.
    include_helm_releases: StrictBool = True


def _release_namespace(release: ResourceView) -> Any:
    namespace = release.get("namespace")
    return "default" if namespace is None else namespace


def _selects(policy: ResourceView, labels: Any) -> bool:
    selector = policy.get("spec", "podSelector")
    if selector is None or selector == {}:
        return True
    match = dig(selector, "matchLabels")
    if dig(selector, "matchExpressions") or not isinstance(match, dict):
        return False  # expressions are not evaluated; only an exact label match counts
    return isinstance(labels, dict) and all(labels.get(k) == v for k, v in match.items())


def check_network_policy_coverage(
    resources: Sequence[ResourceView], cfg: NetworkPolicyConfig
) -> list[Violation]:
    policies = [r for r in resources if r.type == NETWORK_POLICY]
    found: list[Violation] = []
    for workload in (r for r in resources if is_pod_bearing(r)):
        namespace, labels = workload.namespace, pod_labels(workload)
        if namespace is UNKNOWN or labels is UNKNOWN:
            found.append(undetermined(NETPOL, workload, "namespace or labels unknown."))
            continue
        local = [p for p in policies if p.namespace == namespace]
        if not any(_selects(p, labels) for p in local):
            found.append(
                violation(
                    NETPOL,
                    workload,
                    f"no NetworkPolicy in namespace '{namespace}' selects its pods (labels "
                    f"{labels}); add one whose spec.podSelector is {{}} (default deny) or "
                    "matches those labels.",
                )
            )
    if cfg.include_helm_releases:
        for release in (r for r in resources if r.type == HELM_RELEASE):
            namespace = _release_namespace(release)
            if namespace is UNKNOWN:
                found.append(undetermined(NETPOL, release, "namespace unknown at preview."))
            elif not any(p.namespace == namespace and _selects(p, None) for p in policies):
                found.append(
                    violation(
                        NETPOL,
                        release,
                        f"installs workloads in namespace '{namespace}', which has no "
                        "NetworkPolicy with an empty spec.podSelector; add a default-deny "
                        "NetworkPolicy there with the chart's required ingress allowed.",
                    )
                )
    return found


class LoadBalancerConfig(RuleConfig):
    allowed_public: tuple[str, ...] = ()


def _annotated_internal(annotations: Any) -> Any:
    if annotations is UNKNOWN:
        return UNKNOWN
    if not isinstance(annotations, dict):
        return False
    return any(str(annotations.get(k)).lower() == v for k, v in _INTERNAL_ANNOTATIONS.items())


def check_public_load_balancer(resource: ResourceView, cfg: LoadBalancerConfig) -> list[Violation]:
    if name_matches(resource.display_name, cfg.allowed_public):
        return []
    fix = (
        "annotate it service.beta.kubernetes.io/aws-load-balancer-scheme: internal, use a "
        "ClusterIP behind the Gateway, or add it to allowed_public."
    )
    if resource.type == SERVICE:
        lb_type = resource.get("spec", "type")
        if lb_type != "LoadBalancer" and lb_type is not UNKNOWN:
            return []
        internal = _annotated_internal(resource.get("metadata", "annotations"))
        where = "spec.type"
    elif resource.type == ENVOY_PROXY:
        # The Service Envoy Gateway creates for a Gateway of a class naming this EnvoyProxy.
        lb_type, annotations = envoy_proxy_service(resource)
        if lb_type != "LoadBalancer" and lb_type is not UNKNOWN:
            return []
        internal = _annotated_internal(annotations)
        where = "spec.provider.kubernetes.envoyService"
        fix = fix.replace(
            "service.beta", "spec.provider.kubernetes.envoyService.annotations: service.beta"
        )
    elif resource.type == AWS_LB:
        flag = resource.get("internal")
        lb_type, internal, where = "LoadBalancer", flag, "internal"
        fix = "set internal: true, or add it to allowed_public."
    else:
        return []
    if lb_type is UNKNOWN or internal is UNKNOWN:
        return [
            violation(
                PUBLIC_LB,
                resource,
                f"{where} or its scheme is unknown at preview, so it may be public; {fix}",
            )
        ]
    if internal is True:
        return []
    return [violation(PUBLIC_LB, resource, f"is an internet-facing load balancer ({where}); {fix}")]


RULES: list[Rule] = [
    StackRule(
        NETPOL,
        "Every workload's pods, and every Helm release's namespace, are covered by a "
        "NetworkPolicy.",
        "mandatory",
        NetworkPolicyConfig,
        check_network_policy_coverage,
        "A workload's unknown namespace or labels are skipped with an advisory note; a "
        "NetworkPolicy whose namespace or selector is unknown does not count as covering.",
    ),
    ResourceRule(
        PUBLIC_LB,
        "No internet-facing LoadBalancer (Service, Envoy Gateway's EnvoyProxy, AWS LB) "
        "unless annotated internal or allowlisted.",
        "mandatory",
        LoadBalancerConfig,
        check_public_load_balancer,
        "Fails: an unknown type or scheme may be public.",
    ),
]
