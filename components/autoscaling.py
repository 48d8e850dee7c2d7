"""Autoscaling of one Deployment: a KEDA ScaledObject on CPU and on the task stream's
pending entries where KEDA runs, else an autoscaling/v2 HorizontalPodAutoscaler.

The scaled Deployment must not set `spec.replicas`: the autoscaler owns the count.
"""

from __future__ import annotations

from typing import Self

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
from pydantic import model_validator

from components.kube import child_options, labels
from components.values import ArgsModel, InputStr, Percent, PositiveInt


class ReplicaBounds(ArgsModel):
    """The autoscaler's floor and ceiling."""

    min_replicas: PositiveInt
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
    queue_depth_per_replica: PositiveInt = 20


class QueueTrigger(ArgsModel):
    """Where KEDA reads the queue depth: the app's task stream and consumer group."""

    redis_address: InputStr
    stream: str
    consumer_group: str
    pending_entries_per_replica: PositiveInt
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


TRIGGER_AUTHENTICATION = "redis-queue"

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
            self.kind = "HorizontalPodAutoscaler"
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
            self.kind = "ScaledObject"
            queue = args.queue
            redis_streams = {
                "type": "redis-streams",
                "metadata": {
                    "address": queue.redis_address,
                    "stream": queue.stream,
                    "consumerGroup": queue.consumer_group,
                    "pendingEntriesCount": str(queue.pending_entries_per_replica),
                    "enableTLS": "true" if queue.tls else "false",
                },
                "authenticationRef": {"name": queue.trigger_authentication},
            }
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
                        redis_streams,
                    ],
                },
                opts=k8s_opts,
            )
        self.register_outputs({"kind": self.kind})


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
