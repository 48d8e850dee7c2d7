"""CanaryRelease: the stable track and, while one is tried, a canary, with the traffic
split between them and the autoscaling of each Deployment."""

from __future__ import annotations

from typing import Any

import pytest
from component_mocks import evaluate, provider

from components.autoscaling import QueueTrigger, ReplicaBounds
from components.canary import (
    CanaryConfig,
    CanaryRelease,
    CanaryReleaseArgs,
    GatewayRoute,
    TrackRelease,
)
from components.values import Resources

RELEASE = "agent-platform:release:CanaryRelease"
RESOURCES = Resources(
    cpu_request="250m", cpu_limit="1", memory_request="256Mi", memory_limit="512Mi"
)
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"


def _args(**overrides: Any) -> dict[str, Any]:
    return {
        "namespace": "agents",
        "stable": TrackRelease(version="1.0.0", image="app:1.0.0"),
        "canary": TrackRelease(version="1.1.0", image="app:1.1.0"),
        "canary_weight": 20,
        "replicas": ReplicaBounds(min_replicas=4, max_replicas=8),
        "api_resources": RESOURCES,
        "worker_resources": RESOURCES,
        "secret_name": "agent-secrets",
        "settings": {},
        "target_cpu_utilization": 70,
        "target_memory_utilization": 80,
        **overrides,
    }


def test_without_a_gateway_the_split_is_the_ratio_of_replica_floors() -> None:
    def program() -> CanaryRelease:
        return CanaryRelease("agent", CanaryReleaseArgs(provider=provider(), **_args()))

    _, graph = evaluate(program)
    component = graph.component(RELEASE)
    children = graph.kinds(component)
    assert ("agent-platform:agent:AgentService", "agent") in children
    autoscalers = {name for t, name in children if t == "agent-platform:autoscaling:Autoscaling"}
    assert autoscalers == {
        "agent-api-stable",
        "agent-worker-stable",
        "agent-api-canary",
        "agent-worker-canary",
    }
    stable = graph.named(HPA, "agent-api-stable-hpa").inputs["spec"]
    canary = graph.named(HPA, "agent-api-canary-hpa").inputs["spec"]
    # 20% next to 4..8 stable replicas: 1..2 canary replicas.
    assert (stable["minReplicas"], stable["maxReplicas"]) == (4, 8)
    assert (canary["minReplicas"], canary["maxReplicas"]) == (1, 2)
    assert graph.of_type(ROUTE) == []
    assert graph.outputs_of(component) == {
        "endpoint": "http://agent-api.agents.svc.cluster.local",
        "canary": {"version": "1.1.0", "weight": 20},
    }


@pytest.mark.parametrize("route", [None, GatewayRoute(host="agents.example")])
def test_workers_of_both_tracks_may_scale_to_zero_while_the_api_keeps_its_floor(
    route: GatewayRoute | None,
) -> None:
    def program() -> CanaryRelease:
        queue = QueueTrigger(
            redis_address="redis:6379",
            stream="agent:tasks",
            consumer_group="agent-workers",
            lag_per_replica=20,
            trigger_authentication="redis-queue",
        )
        return CanaryRelease(
            "agent",
            CanaryReleaseArgs(
                provider=provider(),
                **_args(
                    worker_replicas=ReplicaBounds(min_replicas=0, max_replicas=8),
                    queue=queue,
                    route=route,
                ),
            ),
        )

    _, graph = evaluate(program)
    floors = {
        s.name.removesuffix("-scaledobject"): s.inputs["spec"]["minReplicaCount"]
        for s in graph.of_type("kubernetes:keda.sh/v1alpha1:ScaledObject")
    }
    assert floors == {
        "agent-api-stable": 4,
        "agent-api-canary": 1,
        "agent-worker-stable": 0,
        "agent-worker-canary": 0,
    }


@pytest.mark.parametrize("tls", [False, True])
def test_behind_the_gateway_the_canary_takes_exactly_its_weight(tls: bool) -> None:
    route = GatewayRoute(host="agents.example.internal", tls=tls)

    def program() -> CanaryRelease:
        return CanaryRelease("agent", CanaryReleaseArgs(provider=provider(), **_args(route=route)))

    _, graph = evaluate(program)
    component = graph.component(RELEASE)
    (http_route,) = graph.of_type(ROUTE)
    assert http_route.parent == component.urn
    spec = http_route.inputs["spec"]
    assert spec["parentRefs"] == [{"name": "agent-api"}]
    assert spec["hostnames"] == ["agents.example.internal"]
    (rule,) = spec["rules"]
    assert rule["backendRefs"] == [
        {"name": "agent-api-stable", "port": 80, "weight": 80},
        {"name": "agent-api-canary", "port": 80, "weight": 20},
    ]
    # No nginx Ingress any more: the HTTPRoute is the only way in.
    assert graph.of_type("kubernetes:networking.k8s.io/v1:Ingress") == []
    scheme = "https" if tls else "http"
    assert graph.outputs_of(component)["endpoint"] == f"{scheme}://agents.example.internal"


def test_without_a_canary_the_route_sends_everything_to_stable() -> None:
    def program() -> CanaryRelease:
        return CanaryRelease(
            "agent",
            CanaryReleaseArgs(
                provider=provider(),
                **_args(canary=None, canary_weight=0, route=GatewayRoute(host="a.example")),
            ),
        )

    _, graph = evaluate(program)
    (http_route,) = graph.of_type(ROUTE)
    (rule,) = http_route.inputs["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": "agent-api-stable", "port": 80, "weight": 100}]


def test_a_zero_weight_canary_is_rolled_back() -> None:
    def program() -> CanaryRelease:
        return CanaryRelease(
            "agent", CanaryReleaseArgs(provider=provider(), **_args(canary_weight=0))
        )

    _, graph = evaluate(program)
    assert {r.name for r in graph.of_type("kubernetes:apps/v1:Deployment")} == {
        "agent-api-stable",
        "agent-worker-stable",
    }
    # No version: the runtime drops the None.
    assert graph.outputs_of(graph.component(RELEASE))["canary"] == {"weight": 0}


def test_the_weight_and_versions_are_checked() -> None:
    k8s_provider, _ = evaluate(provider)
    with pytest.raises(
        ValueError, match=r"canary_weight\n  Input should be less than or equal to 100"
    ):
        CanaryReleaseArgs(provider=k8s_provider, **_args(canary_weight=101))
    # The stack file's section takes the same Weight type.
    with pytest.raises(ValueError, match=r"weight\n  Input should be less than or equal to 100"):
        CanaryConfig(version="1.1.0", image_tag="1.1.0", weight=101)
    with pytest.raises(ValueError, match="the canary's version equals the stable one"):
        CanaryReleaseArgs(
            provider=k8s_provider, **_args(canary=TrackRelease(version="1.0.0", image="app:x"))
        )
