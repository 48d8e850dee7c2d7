"""AgentService: per release track, the API and worker Deployments with their Service
and disruption budgets, plus the shared ServiceAccount, settings and policies."""

from __future__ import annotations

from typing import Any

import pytest
from component_mocks import evaluate, provider

from components.agent_service import AgentService, AgentServiceArgs, ReleaseTrack
from components.kube import TRACK_LABEL
from components.values import Resources

SERVICE = "agent-platform:agent:AgentService"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
RESOURCES = Resources(
    cpu_request="250m", cpu_limit="1", memory_request="256Mi", memory_limit="512Mi"
)


def _args(tracks: list[ReleaseTrack], **overrides: Any) -> dict[str, Any]:
    return {
        "namespace": "agents",
        "tracks": tracks,
        "api_resources": RESOURCES,
        "worker_resources": RESOURCES,
        "secret_name": "agent-secrets",
        "settings": {"AGENT_LOG_LEVEL": "info"},
        **overrides,
    }


STABLE = ReleaseTrack(track="stable", version="1.0.0", image="app:1.0.0", min_replicas=2)
CANARY = ReleaseTrack(track="canary", version="1.1.0", image="app:1.1.0", min_replicas=1)


def test_each_track_gets_an_api_and_a_worker_that_autoscaling_owns() -> None:
    def program() -> AgentService:
        return AgentService(
            "agent", AgentServiceArgs(provider=provider(), **_args([STABLE, CANARY]))
        )

    _, graph = evaluate(program)
    component = graph.component(SERVICE)
    names = {name for t, name in graph.kinds(component) if t == DEPLOYMENT}
    assert names == {
        "agent-api-stable",
        "agent-worker-stable",
        "agent-api-canary",
        "agent-worker-canary",
    }
    canary_api = graph.named(DEPLOYMENT, "agent-api-canary").inputs
    assert canary_api["metadata"]["name"] == "agent-api-canary"
    spec = canary_api["spec"]
    # The autoscaler owns the count.
    assert "replicas" not in spec
    assert spec["selector"]["matchLabels"][TRACK_LABEL] == "canary"
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == "app:1.1.0"
    assert container["envFrom"] == [{"configMapRef": {"name": "agent-settings"}}]
    # Only a track with more than one replica has a budget to keep.
    budgets = {name for t, name in graph.kinds(component) if t.endswith("PodDisruptionBudget")}
    assert budgets == {"agent-api-stable", "agent-worker-stable"}
    outputs = graph.outputs_of(component)
    assert outputs["endpoint"] == "http://agent-api.agents.svc.cluster.local"
    assert outputs["deployments"]["canary"] == {
        "api": "agent-api-canary",
        "worker": "agent-worker-canary",
    }


def test_the_api_admits_the_named_client_namespaces() -> None:
    def program() -> AgentService:
        return AgentService(
            "agent",
            AgentServiceArgs(
                provider=provider(),
                **_args([STABLE], api_client_namespaces=["envoy-gateway-system"]),
            ),
        )

    _, graph = evaluate(program)
    policy = graph.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", "agent-api-ingress")
    rule, _metrics = policy.inputs["spec"]["ingress"]
    assert rule["from"] == [
        {"podSelector": {}},
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}
            }
        },
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_metrics_are_on_a_private_port_that_only_prometheus_reaches() -> None:
    def program() -> AgentService:
        workers_to_zero = STABLE.model_copy(update={"worker_min_replicas": 0})
        return AgentService(
            "agent", AgentServiceArgs(provider=provider(), **_args([workers_to_zero, CANARY]))
        )

    _, graph = evaluate(program)
    api = graph.named(DEPLOYMENT, "agent-api-stable").inputs["spec"]["template"]
    (container,) = api["spec"]["containers"]
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080},
        {"name": "metrics", "containerPort": 9464},
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["AGENT_PORT"], env["AGENT_METRICS_PORT"]) == ("8080", "9464")
    assert api["metadata"]["annotations"]["prometheus.io/port"] == "9464"
    worker = graph.named(DEPLOYMENT, "agent-worker-stable").inputs["spec"]["template"]
    assert worker["metadata"]["annotations"]["prometheus.io/port"] == "8081"

    services = {
        r.inputs["metadata"]["name"]: r.inputs["spec"]
        for r in graph.of_type("kubernetes:core/v1:Service")
    }
    # What clients reach forwards to `http` only, never to the metrics port.
    for public in ("agent-api", "agent-api-stable", "agent-api-canary"):
        assert services[public]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    # The backlog's one scrape target: any API pod's metrics port.
    queue = services["agent-metrics"]
    assert queue["ports"] == [{"name": "metrics", "port": 9464, "targetPort": "metrics"}]
    assert queue["selector"] == services["agent-api"]["selector"]

    policy = graph.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", "agent-api-ingress")
    clients, scraping = policy.inputs["spec"]["ingress"]
    assert clients["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert scraping == {
        "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
        "ports": [{"protocol": "TCP", "port": 9464}],
    }
    # Workers that scale to zero keep no disruption budget; the API keeps its own.
    budgets = {r.name for r in graph.of_type("kubernetes:policy/v1:PodDisruptionBudget")}
    assert budgets == {"agent-api-stable"}


@pytest.mark.parametrize(
    ("tracks", "settings", "message"),
    [
        ([CANARY], {}, "exactly one stable track is required"),
        ([STABLE, STABLE], {}, "exactly one stable track is required"),
        ([STABLE], {"LOG_LEVEL": "info"}, r"settings must be AGENT_\* variables"),
    ],
)
def test_the_args_refuse_bad_tracks_and_settings(
    tracks: list[ReleaseTrack], settings: dict[str, str], message: str
) -> None:
    k8s_provider, _ = evaluate(provider)
    with pytest.raises(ValueError, match=message):
        AgentServiceArgs(provider=k8s_provider, **_args(tracks, settings=settings))
    with pytest.raises(ValueError, match=r"min_replicas\n  Input should be greater than 0"):
        ReleaseTrack(track="stable", version="1", image="app:1", min_replicas=0)


def test_each_role_reads_only_its_secrets_from_a_read_only_directory() -> None:
    """The app's secrets are files in a read-only volume, owner-read only, holding the keys
    the role uses; none is in the containers' environment."""

    def program() -> AgentService:
        return AgentService(
            "agent", AgentServiceArgs(provider=provider(), **_args([STABLE, CANARY]))
        )

    _, graph = evaluate(program)
    expected = {
        "api": {
            "redis-password": "AGENT_REDIS_PASSWORD",
            "api-keys-sha256": "AGENT_API_KEYS_SHA256",
        },
        "worker": {
            "redis-password": "AGENT_REDIS_PASSWORD",
            "llm-api-key": "AGENT_LLM_API_KEY",
        },
    }
    for track in ("stable", "canary"):
        for role, files in expected.items():
            pod = graph.named(DEPLOYMENT, f"agent-{role}-{track}").inputs["spec"]["template"]
            (container,) = pod["spec"]["containers"]
            env = {e["name"]: e for e in container["env"]}
            assert not [e for e in env.values() if "secretKeyRef" in e.get("valueFrom", {})]
            assert not [s for s in container.get("envFrom", []) if "secretRef" in s]
            mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
            assert mount["readOnly"] is True
            assert env["AGENT_SECRETS_DIR"]["value"] == mount["mountPath"]
            volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "secrets")
            assert volume["secret"]["secretName"] == "agent-secrets"
            assert volume["secret"]["defaultMode"] == 0o400
            items = {i["key"]: i["path"] for i in volume["secret"]["items"]}
            assert items == files
