"""A release of the agent service: the stable track and, while one is being tried, a
canary track, with the traffic split between them and their autoscaling.

With an ingress the split is exact: ingress-nginx's canary annotations send `weight`
percent of requests to the canary Service. Without one, both tracks sit behind the
shared Service and the split is the ratio of their replica floors.

Promotion and rollback are config changes. Promote: set `agent.version`/`agent.imageTag`
to the canary's and remove `canary`. Roll back: remove `canary`, or set its weight to 0.
`pulumi up` then deletes the canary's resources.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    HTTPIngressPathArgs,
    HTTPIngressRuleValueArgs,
    Ingress,
    IngressBackendArgs,
    IngressRuleArgs,
    IngressServiceBackendArgs,
    IngressSpecArgs,
    ServiceBackendPortArgs,
)

from components.agent_service import AgentService, AgentServiceArgs, ReleaseTrack
from components.autoscaling import Autoscaling, AutoscalingArgs, QueueTrigger
from components.kube import child_options, labels
from stacks.config import Resources


@dataclass(frozen=True)
class TrackRelease:
    version: str
    image: pulumi.Input[str]


@dataclass(frozen=True)
class IngressRoute:
    host: str
    class_name: str


@dataclass(frozen=True)
class ReplicaBounds:
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class CanaryReleaseArgs:
    namespace: str
    provider: k8s.Provider
    stable: TrackRelease
    canary: TrackRelease | None
    canary_weight: int
    replicas: ReplicaBounds
    api_resources: Resources
    worker_resources: Resources
    secret_name: pulumi.Input[str]
    settings: Mapping[str, pulumi.Input[str]]
    target_cpu_utilization: int
    target_memory_utilization: int
    ingress: IngressRoute | None = None
    queue: QueueTrigger | None = None
    service_account_annotations: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    api_client_namespaces: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.canary_weight <= 100:
            raise ValueError(f"canary_weight must be within 0..100, got {self.canary_weight}")
        if self.canary is not None and self.canary.version == self.stable.version:
            raise ValueError("the canary's version equals the stable one")

    @property
    def canary_active(self) -> bool:
        return self.canary is not None and self.canary_weight > 0


def canary_bounds(stable: ReplicaBounds, weight: int) -> ReplicaBounds:
    """Replica floor and ceiling for a canary taking `weight` percent next to `stable`."""
    share = weight / (100 - weight) if weight < 100 else 1.0
    return ReplicaBounds(
        min_replicas=max(1, math.ceil(stable.min_replicas * share)),
        max_replicas=max(1, math.ceil(stable.max_replicas * share)),
    )


class CanaryRelease(pulumi.ComponentResource):
    endpoint: pulumi.Output[str]
    canary: pulumi.Output[dict[str, object]]
    service: AgentService

    def __init__(
        self, name: str, args: CanaryReleaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:release:CanaryRelease", name, None, opts)
        bounds = {"stable": args.replicas}
        tracks = [
            ReleaseTrack(
                "stable", args.stable.version, args.stable.image, args.replicas.min_replicas
            )
        ]
        if args.canary_active and args.canary is not None:
            bounds["canary"] = (
                ReplicaBounds(1, args.replicas.max_replicas)
                if args.ingress is not None
                else canary_bounds(args.replicas, args.canary_weight)
            )
            tracks.append(
                ReleaseTrack(
                    "canary", args.canary.version, args.canary.image, bounds["canary"].min_replicas
                )
            )

        self.service = AgentService(
            name,
            AgentServiceArgs(
                namespace=args.namespace,
                provider=args.provider,
                tracks=tracks,
                api_resources=args.api_resources,
                worker_resources=args.worker_resources,
                secret_name=args.secret_name,
                settings=args.settings,
                service_account_annotations=args.service_account_annotations,
                api_client_namespaces=args.api_client_namespaces,
            ),
            opts=child_options(self, opts),
        )
        for track, deployments in self.service.deployments.items():
            for role, deployment_name in deployments.items():
                Autoscaling(
                    f"{name}-{role}-{track}",
                    AutoscalingArgs(
                        namespace=args.namespace,
                        provider=args.provider,
                        deployment_name=deployment_name,
                        min_replicas=bounds[track].min_replicas,
                        max_replicas=bounds[track].max_replicas,
                        target_cpu_utilization=args.target_cpu_utilization,
                        target_memory_utilization=args.target_memory_utilization,
                        queue=args.queue,
                    ),
                    opts=child_options(self, opts),
                )

        self.endpoint = self.service.endpoint
        if args.ingress is not None:
            self.endpoint = self._ingresses(name, args, args.ingress, opts)

        active = args.canary if args.canary_active else None
        self.canary = pulumi.Output.from_input(
            {
                "version": active.version if active else None,
                "weight": args.canary_weight if active else 0,
            }
        )
        self.register_outputs({"endpoint": self.endpoint, "canary": self.canary})

    def _ingresses(
        self,
        name: str,
        args: CanaryReleaseArgs,
        route: IngressRoute,
        component_opts: pulumi.ResourceOptions | None,
    ) -> pulumi.Output[str]:
        opts = child_options(self, component_opts, provider=args.provider)

        def ingress(resource: str, track: str, annotations: dict[str, str]) -> None:
            backend = IngressServiceBackendArgs(
                name=self.service.track_service_names[track],
                port=ServiceBackendPortArgs(name="http"),
            )
            Ingress(
                resource,
                metadata=ObjectMetaArgs(
                    name="agent-api" if track == "stable" else f"agent-api-{track}",
                    namespace=args.namespace,
                    labels=labels("agent-api", "ingress"),
                    annotations=annotations,
                ),
                spec=IngressSpecArgs(
                    ingress_class_name=route.class_name,
                    rules=[
                        IngressRuleArgs(
                            host=route.host,
                            http=HTTPIngressRuleValueArgs(
                                paths=[
                                    HTTPIngressPathArgs(
                                        path="/",
                                        path_type="Prefix",
                                        backend=IngressBackendArgs(service=backend),
                                    )
                                ]
                            ),
                        )
                    ],
                ),
                opts=opts,
            )

        ingress(f"{name}-ingress", "stable", {})
        if "canary" in self.service.track_service_names:
            ingress(
                f"{name}-ingress-canary",
                "canary",
                {
                    "nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-weight": str(args.canary_weight),
                },
            )
        return pulumi.Output.from_input(f"http://{route.host}")
