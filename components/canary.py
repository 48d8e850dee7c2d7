"""A release of the agent service: the stable track and, while one is being tried, a
canary track, with the traffic split between them and their autoscaling.

Behind the Gateway (components/gateway.py) the split is exact: an HTTPRoute's
`backendRefs` send `100 - weight` percent of requests to the stable Service and `weight`
percent to the canary's. Without a Gateway, both tracks sit behind the shared Service and
the split is the ratio of their replica floors.

Promotion and rollback are config changes. Promote: set `agent.version`/`agent.imageTag`
to the canary's and remove `canary`. Roll back: remove `canary`, or set its weight to 0.
`pulumi up` then deletes the canary's resources.

With progressive delivery on, Flagger makes the canary of each release and steps its
weight, promotes and rolls back by itself on the analysis
(components/progressive_delivery.py): the stack declares the stable track alone and
Flagger's Canary objects, and Flagger writes the HTTPRoute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Self

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pydantic import Field, model_validator

from components.agent_service import (
    WORKER_PORT,
    AgentService,
    AgentServiceArgs,
    ReleaseTrack,
    Version,
)
from components.app_image import ImageTag
from components.autoscaling import Autoscaling, AutoscalingArgs, QueueTrigger, ReplicaBounds
from components.gateway import GATEWAY_API, GATEWAY_NAME, SERVICE_PORT, http_route_spec
from components.kube import child_options, labels
from components.progressive_delivery import (
    Autoscaler,
    ProgressiveDeliveryConfig,
    ProgressiveRelease,
    ProgressiveReleaseArgs,
    ReleaseTarget,
)
from components.values import ArgsModel, InputStr, Percent, Resources

# The canary's share of requests, in percent.
Weight = Annotated[int, Field(ge=0, le=100, strict=True)]


class CanaryConfig(ArgsModel):
    """A release being tried next to the stable one: the stack file's `canary` section."""

    version: Version
    image_tag: ImageTag
    weight: Weight


class TrackRelease(ArgsModel):
    version: Version
    image: InputStr


class GatewayRoute(ArgsModel):
    """Where the agent API is published: the host the HTTPRoute matches on the Gateway,
    and whether its listener terminates TLS (the endpoint's scheme)."""

    host: str
    tls: bool = False


class CanaryReleaseArgs(ArgsModel):
    namespace: str
    provider: k8s.Provider
    stable: TrackRelease
    canary: TrackRelease | None
    canary_weight: Weight
    replicas: ReplicaBounds
    # The workers' bounds when they differ (a floor of 0 scales them to zero with KEDA).
    worker_replicas: ReplicaBounds | None = None
    api_resources: Resources
    worker_resources: Resources
    secret_name: InputStr
    settings: Mapping[str, InputStr]
    target_cpu_utilization: Percent
    target_memory_utilization: Percent
    route: GatewayRoute | None = None
    queue: QueueTrigger | None = None
    service_account_annotations: Mapping[str, InputStr] = {}
    api_client_namespaces: Sequence[str] = ()
    # Flagger releases, and the Prometheus its analysis queries.
    progressive: ProgressiveDeliveryConfig | None = None
    prometheus_url: InputStr | None = None

    @model_validator(mode="after")
    def _a_new_version(self) -> Self:
        if self.canary is not None and self.canary.version == self.stable.version:
            raise ValueError("the canary's version equals the stable one")
        return self

    @model_validator(mode="after")
    def _flagger_needs_a_route_and_no_manual_canary(self) -> Self:
        if self.progressive is None:
            return self
        if self.canary is not None:
            raise ValueError("a manual canary and progressive delivery exclude each other")
        if self.route is None or self.prometheus_url is None:
            raise ValueError("progressive delivery needs the Gateway route and Prometheus")
        return self

    @property
    def canary_active(self) -> bool:
        return self.canary is not None and self.canary_weight > 0


def canary_bounds(stable: ReplicaBounds, weight: int) -> ReplicaBounds:
    """Replica floor and ceiling for a canary taking `weight` percent next to `stable`; a
    stable floor of 0 (workers scaled to zero) stays 0 for the canary."""
    share = weight / (100 - weight) if weight < 100 else 1.0
    floor = 0 if stable.min_replicas == 0 else max(1, math.ceil(stable.min_replicas * share))
    return ReplicaBounds(
        min_replicas=floor,
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
        workers = args.worker_replicas or args.replicas
        bounds = {("stable", "api"): args.replicas, ("stable", "worker"): workers}
        tracks = [
            ReleaseTrack(
                track="stable",
                version=args.stable.version,
                image=args.stable.image,
                min_replicas=args.replicas.min_replicas,
                worker_min_replicas=workers.min_replicas,
            )
        ]
        if args.canary_active and args.canary is not None:
            for role, stable in (("api", args.replicas), ("worker", workers)):
                bounds["canary", role] = (
                    ReplicaBounds(
                        min_replicas=min(1, stable.min_replicas),
                        max_replicas=stable.max_replicas,
                    )
                    if args.route is not None
                    else canary_bounds(stable, args.canary_weight)
                )
            tracks.append(
                ReleaseTrack(
                    track="canary",
                    version=args.canary.version,
                    image=args.canary.image,
                    min_replicas=bounds["canary", "api"].min_replicas,
                    worker_min_replicas=bounds["canary", "worker"].min_replicas,
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
                progressive=args.progressive is not None,
            ),
            opts=child_options(self, opts),
        )
        scalers: dict[str, Autoscaler] = {}
        for track, deployments in self.service.deployments.items():
            for role, deployment_name in deployments.items():
                scaling = Autoscaling(
                    f"{name}-{role}-{track}",
                    AutoscalingArgs(
                        namespace=args.namespace,
                        provider=args.provider,
                        deployment_name=deployment_name,
                        replicas=bounds[track, role],
                        target_cpu_utilization=args.target_cpu_utilization,
                        target_memory_utilization=args.target_memory_utilization,
                        queue=args.queue,
                    ),
                    opts=child_options(self, opts),
                )
                scalers[role] = Autoscaler(
                    api_version=scaling.api_version, kind=scaling.kind, name=deployment_name
                )

        self.endpoint = self.service.endpoint
        if args.progressive is not None and args.route is not None and args.prometheus_url:
            released = self.service.deployments["stable"]
            ProgressiveRelease(
                name,
                ProgressiveReleaseArgs(
                    namespace=args.namespace,
                    provider=args.provider,
                    config=args.progressive,
                    prometheus_url=args.prometheus_url,
                    api=ReleaseTarget(
                        deployment=released["api"],
                        autoscaler=scalers["api"],
                        port=SERVICE_PORT,
                    ),
                    worker=ReleaseTarget(
                        deployment=released["worker"],
                        autoscaler=scalers["worker"],
                        port=WORKER_PORT,
                    ),
                    gateway_name=GATEWAY_NAME,
                    host=args.route.host,
                ),
                opts=child_options(self, opts),
            )
            self.endpoint = self._endpoint(args.route)
        elif args.route is not None:
            self.endpoint = self._http_route(name, args, args.route, opts)

        active = args.canary if args.canary_active else None
        self.canary = pulumi.Output.from_input(
            {
                "version": active.version if active else None,
                "weight": args.canary_weight if active else 0,
            }
        )
        self.register_outputs({"endpoint": self.endpoint, "canary": self.canary})

    def _http_route(
        self,
        name: str,
        args: CanaryReleaseArgs,
        route: GatewayRoute,
        component_opts: pulumi.ResourceOptions | None,
    ) -> pulumi.Output[str]:
        CustomResource(
            f"{name}-route",
            api_version=GATEWAY_API,
            kind="HTTPRoute",
            metadata=ObjectMetaArgs(
                name="agent-api", namespace=args.namespace, labels=labels("agent-api", "route")
            ),
            spec=http_route_spec(route.host, self.service.track_service_names, args.canary_weight),
            opts=child_options(self, component_opts, provider=args.provider),
        )
        return self._endpoint(route)

    @staticmethod
    def _endpoint(route: GatewayRoute) -> pulumi.Output[str]:
        scheme = "https" if route.tls else "http"
        return pulumi.Output.from_input(f"{scheme}://{route.host}")
