"""Values unknown at preview never crash a rule, and never pass where they must be known."""

from __future__ import annotations

from typing import Any

import pytest
from policy_fixtures import resource, workload

from costing.view import UNKNOWN, ResourceView
from policies.catalog import RULES
from policies.rule import ResourceRule, StackRule
from policies.workloads import LONG_RUNNING, POD_SPEC_PATHS


def unknown_leaves(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: unknown_leaves(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unknown_leaves(v) for v in value]
    return UNKNOWN


def samples() -> list[ResourceView]:
    found = [workload(kind) for kind in sorted(POD_SPEC_PATHS)]
    found += [
        resource("kubernetes:core/v1:Service", "api", {"spec": {"type": "LoadBalancer"}}),
        resource("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "api", {"spec": {}}),
        resource("kubernetes:keda.sh/v1alpha1:ScaledObject", "worker", {"spec": {}}),
        resource("kubernetes:helm.sh/v3:Release", "envoy-gateway", {"chart": "gateway-helm"}),
        resource(
            "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy",
            "proxy",
            {"spec": {"provider": {"kubernetes": {"envoyService": {"type": "LoadBalancer"}}}}},
        ),
        resource(
            "kubernetes:gateway.networking.k8s.io/v1:Gateway",
            "gateway",
            {"spec": {"listeners": [{"name": "https", "protocol": "HTTPS", "port": 443}]}},
        ),
        resource(
            "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute",
            "route",
            {"spec": {"rules": [{"backendRefs": [{"name": "api-stable", "weight": 100}]}]}},
        ),
        resource(
            "kubernetes:networking.k8s.io/v1:Ingress", "ingress", {"spec": {"tls": [{"hosts": []}]}}
        ),
        resource("aws:eks/cluster:Cluster", "prod", {"encryptionConfig": {}, "vpcConfig": {}}),
        resource("aws:eks/nodeGroup:NodeGroup", "gpu", {"instanceTypes": ["g5.xlarge"]}),
        resource("aws:elasticache/replicationGroup:ReplicationGroup", "redis", {"nodeType": "x"}),
        resource("aws:secretsmanager/secret:Secret", "keys", {"kmsKeyId": "k"}),
        resource("kubernetes:core/v1:ConfigMap", "settings", {"data": {"A": "b"}}),
        resource(
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "egress",
            {"spec": {"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}},
        ),
        # The AWS hardening rules' resources.
        resource("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.0.0.0/16"}),
        resource("aws:ec2/flowLog:FlowLog", "flow", {"vpcId": "v", "trafficType": "ALL"}),
        resource("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "default", {"ingress": []}),
        resource("aws:eks/addon:Addon", "vpc-cni", {"addonName": "vpc-cni"}),
        resource(
            "aws:ec2/launchTemplate:LaunchTemplate",
            "nodes",
            {"metadataOptions": {"httpTokens": "required"}, "blockDeviceMappings": [{}]},
        ),
        resource(
            "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass",
            "gpu",
            {"spec": {"metadataOptions": {"httpTokens": "required"}}},
        ),
        resource("aws:kms/key:Key", "stack", {"enableKeyRotation": True, "policy": "{}"}),
        resource("aws:cloudwatch/logGroup:LogGroup", "logs", {"retentionInDays": 14}),
    ]
    return found


def whole_spec_unknown(view: ResourceView) -> ResourceView:
    props = {k: (v if k == "metadata" else UNKNOWN) for k, v in view.props.items()}
    return ResourceView(view.type, view.name, view.urn, props)


def every_leaf_unknown(view: ResourceView) -> ResourceView:
    props = {k: (v if k == "metadata" else unknown_leaves(v)) for k, v in view.props.items()}
    return ResourceView(view.type, view.name, view.urn, props)


@pytest.mark.parametrize(
    "rule", [r for r in RULES if isinstance(r, ResourceRule)], ids=lambda r: r.name
)
def test_resource_rules_survive_unknowns(rule: ResourceRule[Any]) -> None:
    for sample in samples():
        for view in (whole_spec_unknown(sample), every_leaf_unknown(sample)):
            rule.check(view, rule.config())


@pytest.mark.parametrize(
    "rule", [r for r in RULES if isinstance(r, StackRule)], ids=lambda r: r.name
)
def test_stack_rules_survive_unknowns(rule: StackRule[Any]) -> None:
    for transform in (whole_spec_unknown, every_leaf_unknown):
        rule.check([transform(s) for s in samples()], rule.config())


POD_RULES = {
    "container-resources-required",
    "pod-limits-within-caps",
    "requests-within-limits",
    "ephemeral-storage-bounded",
    "gpu-limits-only",
    "gpu-pods-on-gpu-nodes",
    "gpu-taint-reserved",
    "image-pinned",
    "third-party-image-digest",
    "container-security-context",
    "no-privileged-or-host-access",
    "secrets-as-files",
}
APPLIES: dict[str, set[str]] = {
    **{name: set(POD_SPEC_PATHS) for name in POD_RULES},
    "no-secret-literals-in-env": {*POD_SPEC_PATHS, "kubernetes:core/v1:ConfigMap"},
    "probes-configured": set(LONG_RUNNING),
    "autoscaler-bounds": {
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
    },
    "no-public-load-balancer": {
        "kubernetes:core/v1:Service",
        "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy",
    },
    "listener-tls": {
        "kubernetes:gateway.networking.k8s.io/v1:Gateway",
        "kubernetes:networking.k8s.io/v1:Ingress",
    },
    "canary-route-weights": {"kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"},
    "rollout-has-analysis": {"kubernetes:flagger.app/v1beta1:Canary"},
    "eks-cluster-hardening": {"aws:eks/cluster:Cluster"},
    "elasticache-hardening": {"aws:elasticache/replicationGroup:ReplicationGroup"},
    "no-instance-metadata-egress": {"kubernetes:networking.k8s.io/v1:NetworkPolicy"},
    "secretsmanager-kms": set(),  # an unknown key id is a key: counts as set, by design
    "eks-public-endpoint-restricted": {"aws:eks/cluster:Cluster"},
    "node-group-hardening": {
        "aws:eks/nodeGroup:NodeGroup",
        "aws:ec2/launchTemplate:LaunchTemplate",
        "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass",
    },
    # An unknown policy or key id is one computed in the same update: counts as set; the
    # rotation flag and the retention must be known.
    "kms-key-hardening": {"aws:kms/key:Key"},
    "log-group-hardening": {"aws:cloudwatch/logGroup:LogGroup"},
    "elasticache-cmk": {"aws:elasticache/replicationGroup:ReplicationGroup"},
}


def test_every_resource_rule_is_classified() -> None:
    assert set(APPLIES) == {r.name for r in RULES if isinstance(r, ResourceRule)}


@pytest.mark.parametrize(
    "rule", [r for r in RULES if isinstance(r, ResourceRule)], ids=lambda r: r.name
)
def test_a_wholly_unknown_resource_is_never_a_silent_pass(rule: ResourceRule[Any]) -> None:
    for sample in samples():
        if sample.type in APPLIES[rule.name]:
            found = rule.check(whole_spec_unknown(sample), rule.config())
            assert found, (rule.name, sample.label)
