"""Autoscaling: an HPA on CPU and memory, or a KEDA ScaledObject on CPU and the task
stream's pending entries; KedaRedisAuth lets KEDA read the Redis password."""

from __future__ import annotations

import pytest
from component_mocks import evaluate, provider

from components.autoscaling import (
    Autoscaling,
    AutoscalingArgs,
    AutoscalingConfig,
    KedaRedisAuth,
    KedaRedisAuthArgs,
    QueueTrigger,
    ReplicaBounds,
)

AUTOSCALING = "agent-platform:autoscaling:Autoscaling"
BOUNDS = ReplicaBounds(min_replicas=2, max_replicas=6)


def test_without_a_queue_an_hpa_targets_the_deployment() -> None:
    def program() -> Autoscaling:
        return Autoscaling(
            "agent-api-stable",
            AutoscalingArgs(
                namespace="agents",
                provider=provider(),
                deployment_name="agent-api",
                replicas=BOUNDS,
                target_cpu_utilization=60,
            ),
        )

    _, graph = evaluate(program)
    component = graph.component(AUTOSCALING)
    hpa = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
    assert graph.kinds(component) == [(hpa, "agent-api-stable-hpa")]
    spec = graph.named(hpa, "agent-api-stable-hpa").inputs["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "agent-api",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 6)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in spec["metrics"]}
    assert targets["cpu"] == {"type": "Utilization", "averageUtilization": 60}
    assert targets["memory"] == {"type": "Utilization", "averageUtilization": 80}
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert graph.outputs_of(component) == {"kind": "HorizontalPodAutoscaler"}


def test_with_a_queue_keda_scales_on_cpu_and_pending_entries() -> None:
    def program() -> Autoscaling:
        k8s_provider = provider()
        auth = KedaRedisAuth(
            "queue-auth",
            KedaRedisAuthArgs(
                namespace="agents",
                provider=k8s_provider,
                secret_name="agent-secrets",
                password_key="redis-password",
            ),
        )
        queue = QueueTrigger(
            redis_address="redis.agents.svc.cluster.local:6379",
            stream="agent:tasks",
            consumer_group="agent-workers",
            pending_entries_per_replica=20,
            trigger_authentication=auth.name,
            tls=True,
        )
        return Autoscaling(
            "agent-worker-stable",
            AutoscalingArgs(
                namespace="agents",
                provider=k8s_provider,
                deployment_name="agent-worker",
                replicas=BOUNDS,
                queue=queue,
            ),
        )

    _, graph = evaluate(program)
    component = graph.component(AUTOSCALING)
    scaled = "kubernetes:keda.sh/v1alpha1:ScaledObject"
    assert graph.kinds(component) == [(scaled, "agent-worker-stable-scaledobject")]
    spec = graph.named(scaled, "agent-worker-stable-scaledobject").inputs["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 6)
    cpu, streams = spec["triggers"]
    assert cpu["metadata"] == {"value": "70"}
    assert streams["metadata"]["pendingEntriesCount"] == "20"
    assert streams["metadata"]["enableTLS"] == "true"
    assert streams["authenticationRef"] == {"name": "redis-queue"}
    # KEDA hands the HPA it makes the same behaviour as the plain HPA's.
    behaviour = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behaviour["scaleUp"]["policies"][1] == {"type": "Pods", "value": 4, "periodSeconds": 30}
    auth = graph.component("agent-platform:autoscaling:KedaRedisAuth")
    (trigger_auth,) = graph.children(auth)
    assert trigger_auth.inputs["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "agent-secrets", "key": "redis-password"}
    ]
    assert graph.outputs_of(auth) == {"name": "redis-queue"}
    assert graph.outputs_of(component) == {"kind": "ScaledObject"}


def test_bounds_and_targets_are_checked_once() -> None:
    with pytest.raises(ValueError, match="minReplicas 5 is greater than maxReplicas 2"):
        ReplicaBounds(min_replicas=5, max_replicas=2)
    # The stack file's section is the same model: the same check, under its key.
    with pytest.raises(ValueError, match="minReplicas 5 is greater than maxReplicas 2"):
        AutoscalingConfig(keda=False, min_replicas=5, max_replicas=2)
    with pytest.raises(ValueError, match=r"min_replicas\n  Input should be greater than 0"):
        ReplicaBounds(min_replicas=0, max_replicas=2)
    with pytest.raises(ValueError, match=r"pending_entries_per_replica\n  Input should be greater"):
        QueueTrigger(
            redis_address="r:6379",
            stream="s",
            consumer_group="g",
            pending_entries_per_replica=0,
            trigger_authentication="a",
        )
