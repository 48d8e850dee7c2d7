"""Autoscaling: an HPA on CPU and memory, or a KEDA ScaledObject on CPU and the task
stream's backlog (the consumer group's lag); KedaRedisAuth lets KEDA read the Redis
password."""

from __future__ import annotations

import json

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


def _queue_scaler(replicas: ReplicaBounds) -> Autoscaling:
    k8s_provider = provider()
    queue = QueueTrigger(
        redis_address="redis.agents.svc.cluster.local:6379",
        stream="agent:tasks",
        consumer_group="agent-workers",
        lag_per_replica=20,
        trigger_authentication="redis-queue",
    )
    return Autoscaling(
        "agent-worker-stable",
        AutoscalingArgs(
            namespace="agents",
            provider=k8s_provider,
            deployment_name="agent-worker",
            replicas=replicas,
            queue=queue,
        ),
    )


def test_keda_scales_on_the_undelivered_backlog_not_on_pending_entries() -> None:
    _, graph = evaluate(lambda: _queue_scaler(BOUNDS))
    spec = graph.named(
        "kubernetes:keda.sh/v1alpha1:ScaledObject", "agent-worker-stable-scaledobject"
    ).inputs["spec"]
    _cpu, backlog = spec["triggers"]
    # The group's lag: entries no worker has taken yet, what the app exports as
    # agent_queue_depth. pendingEntriesCount (delivered, unacknowledged) never saw them.
    assert backlog["metadata"] == {
        "address": "redis.agents.svc.cluster.local:6379",
        "stream": "agent:tasks",
        "enableTLS": "false",
        "consumerGroup": "agent-workers",
        "lagCount": "20",
        # KEDA 2.16 reads 0 as missing and refuses the trigger.
        "activationLagCount": "1",
    }
    assert "pendingEntriesCount" not in json.dumps(spec)


def test_workers_scale_to_zero_and_any_entry_wakes_one() -> None:
    _, graph = evaluate(lambda: _queue_scaler(ReplicaBounds(min_replicas=0, max_replicas=6)))
    spec = graph.named(
        "kubernetes:keda.sh/v1alpha1:ScaledObject", "agent-worker-stable-scaledobject"
    ).inputs["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 6)
    types = [t["type"] for t in spec["triggers"]]
    assert types == ["cpu", "redis-streams", "redis-streams"]
    backlog, wake = spec["triggers"][1:]
    assert backlog["metadata"]["lagCount"] == "20"
    # Active on any entry (waiting, or pending after its worker went away); its target
    # asks for one replica at most up to 6 x 20 entries, so the lag scales beyond one.
    assert wake["name"] == "wake-from-zero"
    assert "consumerGroup" not in wake["metadata"]
    assert wake["metadata"]["streamLength"] == "120"
    assert wake["authenticationRef"] == {"name": "redis-queue"}
    # Scale to zero is KEDA's: a plain HPA cannot.
    with pytest.raises(ValueError, match="minReplicas 0 needs a queue trigger"):
        AutoscalingArgs(
            namespace="agents",
            provider=provider(),
            deployment_name="agent-worker",
            replicas=ReplicaBounds(min_replicas=0, max_replicas=6),
        )


def test_with_a_queue_keda_scales_on_cpu_and_the_backlog() -> None:
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
            lag_per_replica=20,
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
    assert streams["metadata"]["lagCount"] == "20"
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
    with pytest.raises(ValueError, match=r"min_replicas\n  Input should be greater than or"):
        ReplicaBounds(min_replicas=-1, max_replicas=2)
    with pytest.raises(ValueError, match="the API needs at least 1 replica"):
        AutoscalingConfig(keda=True, min_replicas=0, max_replicas=2)
    with pytest.raises(ValueError, match="0 needs keda: true"):
        AutoscalingConfig(keda=False, min_replicas=1, max_replicas=2, worker_min_replicas=0)
    with pytest.raises(ValueError, match="3 is greater than maxReplicas 2"):
        AutoscalingConfig(keda=True, min_replicas=1, max_replicas=2, worker_min_replicas=3)
    config = AutoscalingConfig(keda=True, min_replicas=2, max_replicas=6, worker_min_replicas=0)
    assert config.workers == ReplicaBounds(min_replicas=0, max_replicas=6)
    assert AutoscalingConfig(keda=True, min_replicas=2, max_replicas=6).workers == BOUNDS
    with pytest.raises(ValueError, match=r"lag_per_replica\n  Input should be greater"):
        QueueTrigger(
            redis_address="r:6379",
            stream="s",
            consumer_group="g",
            lag_per_replica=0,
            trigger_authentication="a",
        )
