"""Autoscaling of one Deployment: a KEDA ScaledObject on CPU and on the task stream's
backlog where KEDA runs, else an autoscaling/v2 HorizontalPodAutoscaler.

The backlog is the consumer group's *lag*: entries not yet delivered to any worker, which
KEDA's redis-streams trigger reads with `lagCount` (Redis 7+, `XINFO GROUPS`). It is what
the agent app exports as `agent_queue_depth` (agent_app/README.md), so dashboards, alerts
and the autoscaler mean the same by "depth". The trigger used `pendingEntriesCount`
before, which counts only entries delivered and not yet acknowledged: the real backlog,
still undelivered, was invisible to it (kedacore/keda#3127).

A Deployment may scale to zero (minReplicas 0, KEDA only). KEDA 2.16 refuses
`activationLagCount: 0` as missing and activates on lag strictly above it, so one waiting
task alone would never wake a worker; and entries left pending by a worker that was
scaled away need a worker to be reclaimed. So a scale-to-zero Deployment also gets a
`streamLength` trigger (the app deletes entries it acknowledges: the stream holds exactly
the waiting and the pending ones), active on any entry, whose target is so high that it
asks for one replica at most: the lag trigger alone scales beyond that.

The scaled Deployment must not set `spec.replicas`: the autoscaler owns the count.
"""

from __future__ import annotations

from typing import Any, Self

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.autoscaling.v2 import (
    CrossVersionObjectReferenceArgs,
    HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehaviorArgs,
    HorizontalPodAutoscalerSpecArgs,
    HPAScalingPolicyArgs,
    HPAScalingRulesArgs,
    MetricSpecArgs,
    MetricTargetArgs,
    ResourceMetricSourceArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pydantic import ValidationInfo, field_validator, model_validator

from components.kube import child_options, labels
from components.values import ArgsModel, InputStr, NonNegativeInt, Percent, PositiveInt


class ReplicaBounds(ArgsModel):
    """The autoscaler's floor and ceiling; a floor of 0 (scale to zero) needs KEDA."""

    min_replicas: NonNegativeInt
    max_replicas: PositiveInt

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas {self.min_replicas} is greater than maxReplicas {self.max_replicas}"
            )
        return self


class AutoscalingConfig(ReplicaBounds):
    """How the agent's Deployments scale: the stack file's `autoscaling` section."""

    # KEDA on CPU and the task stream's backlog; else a plain HPA on CPU and memory.
    keda: bool
    target_cpu_utilization: Percent = 70
    target_memory_utilization: Percent = 80
    # Tasks waiting undelivered (the group's lag, `agent_queue_depth`) per worker replica.
    queue_depth_per_replica: PositiveInt = 20
    # The workers' floor, when it differs from minReplicas: 0 lets KEDA scale them to
    # zero while the stream is empty (the API keeps minReplicas).
    worker_min_replicas: NonNegativeInt | None = None

    @field_validator("min_replicas")
    @classmethod
    def _api_needs_a_replica(cls, value: int) -> int:
        if value < 1:
            raise ValueError("the API needs at least 1 replica; set workerMinReplicas: 0 instead")
        return value

    @field_validator("worker_min_replicas")
    @classmethod
    def _workers_scale_to_zero_with_keda(
        cls, value: int | None, info: ValidationInfo
    ) -> int | None:
        if value is None:
            return value
        if value == 0 and info.data.get("keda") is False:
            raise ValueError(
                "0 needs keda: true (an HPA cannot scale to zero; KEDA wakes workers on the "
                "task stream)"
            )
        ceiling = info.data.get("max_replicas")
        if ceiling is not None and value > ceiling:
            raise ValueError(f"{value} is greater than maxReplicas {ceiling}")
        return value

    @property
    def workers(self) -> ReplicaBounds:
        floor = self.min_replicas if self.worker_min_replicas is None else self.worker_min_replicas
        return ReplicaBounds(min_replicas=floor, max_replicas=self.max_replicas)


class QueueTrigger(ArgsModel):
    """Where KEDA reads the queue depth: the app's task stream and consumer group."""

    redis_address: InputStr
    stream: str
    consumer_group: str
    # Undelivered entries (the group's lag) per replica: KEDA's `lagCount`.
    lag_per_replica: PositiveInt
    trigger_authentication: InputStr
    tls: bool = False


class AutoscalingArgs(ArgsModel):
    namespace: str
    provider: k8s.Provider
    deployment_name: InputStr
    replicas: ReplicaBounds
    target_cpu_utilization: Percent = 70
    target_memory_utilization: Percent = 80
    # Set to scale with KEDA; None gives a plain HPA on CPU and memory.
    queue: QueueTrigger | None = None

    @model_validator(mode="after")
    def _zero_needs_keda(self) -> Self:
        if self.replicas.min_replicas == 0 and self.queue is None:
            raise ValueError(
                "minReplicas 0 needs a queue trigger (KEDA): an HPA cannot scale to zero"
            )
        return self


TRIGGER_AUTHENTICATION = "redis-queue"
# KEDA 2.16 refuses 0 (it reads as "missing") and activates on lag strictly above this.
ACTIVATION_LAG = 1

# Scale up fast when work piles up, down slowly so bursts do not thrash the pods. KEDA's
# ScaledObject passes the same object on to the HPA it makes.
SCALING_BEHAVIOUR = HorizontalPodAutoscalerBehaviorArgs(
    scale_up=HPAScalingRulesArgs(
        stabilization_window_seconds=0,
        select_policy="Max",
        policies=[
            HPAScalingPolicyArgs(type="Percent", value=100, period_seconds=30),
            HPAScalingPolicyArgs(type="Pods", value=4, period_seconds=30),
        ],
    ),
    scale_down=HPAScalingRulesArgs(
        stabilization_window_seconds=300,
        select_policy="Min",
        policies=[HPAScalingPolicyArgs(type="Percent", value=20, period_seconds=60)],
    ),
)


class Autoscaling(pulumi.ComponentResource):
    # What it made, as a reference names it (a Flagger Canary's autoscalerRef).
    api_version: str
    kind: str

    def __init__(
        self, name: str, args: AutoscalingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:autoscaling:Autoscaling", name, None, opts)
        k8s_opts = child_options(self, opts, provider=args.provider)
        metadata = ObjectMetaArgs(
            name=args.deployment_name,
            namespace=args.namespace,
            labels=labels("agent", "autoscaling"),
        )
        target = CrossVersionObjectReferenceArgs(
            api_version="apps/v1", kind="Deployment", name=args.deployment_name
        )
        if args.queue is None:
            self.api_version, self.kind = "autoscaling/v2", "HorizontalPodAutoscaler"
            HorizontalPodAutoscaler(
                f"{name}-hpa",
                metadata=metadata,
                spec=HorizontalPodAutoscalerSpecArgs(
                    scale_target_ref=target,
                    min_replicas=args.replicas.min_replicas,
                    max_replicas=args.replicas.max_replicas,
                    metrics=[
                        _utilisation("cpu", args.target_cpu_utilization),
                        _utilisation("memory", args.target_memory_utilization),
                    ],
                    behavior=SCALING_BEHAVIOUR,
                ),
                opts=k8s_opts,
            )
        else:
            self.api_version, self.kind = "keda.sh/v1alpha1", "ScaledObject"
            triggers = _queue_triggers(args.queue, args.replicas)
            k8s.apiextensions.CustomResource(
                f"{name}-scaledobject",
                api_version="keda.sh/v1alpha1",
                kind="ScaledObject",
                metadata=metadata,
                spec={
                    "scaleTargetRef": target,
                    "minReplicaCount": args.replicas.min_replicas,
                    "maxReplicaCount": args.replicas.max_replicas,
                    "pollingInterval": 15,
                    "cooldownPeriod": 300,
                    "advanced": {"horizontalPodAutoscalerConfig": {"behavior": SCALING_BEHAVIOUR}},
                    "triggers": [
                        {
                            "type": "cpu",
                            "metricType": "Utilization",
                            "metadata": {"value": str(args.target_cpu_utilization)},
                        },
                        *triggers,
                    ],
                },
                opts=k8s_opts,
            )
        self.register_outputs({"kind": self.kind})


def _queue_triggers(queue: QueueTrigger, replicas: ReplicaBounds) -> list[dict[str, Any]]:
    """The redis-streams triggers: the backlog (lag), and for a Deployment that may scale
    to zero, the stream's length to wake one replica (see the module docstring)."""
    connection = {
        "address": queue.redis_address,
        "stream": queue.stream,
        "enableTLS": "true" if queue.tls else "false",
    }
    auth = {"name": queue.trigger_authentication}
    triggers: list[dict[str, Any]] = [
        {
            "type": "redis-streams",
            "name": "backlog",
            "metadata": {
                **connection,
                "consumerGroup": queue.consumer_group,
                "lagCount": str(queue.lag_per_replica),
                "activationLagCount": str(ACTIVATION_LAG),
            },
            "authenticationRef": auth,
        }
    ]
    if replicas.min_replicas == 0:
        # ceil(length / target) is 1 for any length up to the most the Deployment could
        # have waiting at its ceiling: one replica from here, the rest from the lag.
        at_rest = queue.lag_per_replica * replicas.max_replicas
        triggers.append(
            {
                "type": "redis-streams",
                "name": "wake-from-zero",
                "metadata": {**connection, "streamLength": str(at_rest)},
                "authenticationRef": auth,
            }
        )
    return triggers


def _utilisation(resource: str, percent: int) -> MetricSpecArgs:
    return MetricSpecArgs(
        type="Resource",
        resource=ResourceMetricSourceArgs(
            name=resource,
            target=MetricTargetArgs(type="Utilization", average_utilization=percent),
        ),
    )


class KedaRedisAuthArgs(ArgsModel):
    namespace: str
    provider: k8s.Provider
    secret_name: InputStr
    password_key: str


class KedaRedisAuth(pulumi.ComponentResource):
    """The TriggerAuthentication through which KEDA reads the Redis password Secret."""

    name: pulumi.Output[str]

    def __init__(
        self, name: str, args: KedaRedisAuthArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:autoscaling:KedaRedisAuth", name, None, opts)
        auth = k8s.apiextensions.CustomResource(
            f"{name}-trigger-auth",
            api_version="keda.sh/v1alpha1",
            kind="TriggerAuthentication",
            metadata={
                "name": TRIGGER_AUTHENTICATION,
                "namespace": args.namespace,
                "labels": labels("agent", "autoscaling"),
            },
            spec={
                "secretTargetRef": [
                    {"parameter": "password", "name": args.secret_name, "key": args.password_key}
                ]
            },
            opts=child_options(self, opts, provider=args.provider),
        )
        # Resolves once the object exists, so a ScaledObject never names a missing one.
        self.name = auth.id.apply(lambda _: TRIGGER_AUTHENTICATION)
        self.register_outputs({"name": self.name})
