"""LlmService: vLLM on the GPU pool, the dev stand-in from the app image, or an external
endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from component_mocks import evaluate, priced_both_ways, provider

from components.kube import GPU_POOL_LABEL, GPU_RESOURCE
from components.llm_service import LlmConfig, LlmService, LlmServiceArgs
from components.values import SecretKeyRef

LLM = "agent-platform:llm:LlmService"
KEY = SecretKeyRef(name="agent-secrets", key="llm-api-key")
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def test_vllm_runs_on_the_gpu_pool_with_a_shared_model_cache() -> None:
    config = LlmConfig(mode="vllm", model="org/model", replicas=2, gpus_per_replica=2)

    def program() -> LlmService:
        return LlmService(
            "llm",
            LlmServiceArgs(config=config, namespace="agents", provider=provider(), api_key=KEY),
        )

    _, graph = evaluate(program)
    component = graph.component(LLM)
    assert graph.kinds(component) == [
        (DEPLOYMENT, "llm-server"),
        ("kubernetes:core/v1:PersistentVolumeClaim", "llm-model-cache"),
        ("kubernetes:core/v1:Service", "llm-service"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "llm-netpol"),
        ("kubernetes:policy/v1:PodDisruptionBudget", "llm-pdb"),
    ]
    pod = graph.named(DEPLOYMENT, "llm-server").inputs["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {GPU_POOL_LABEL: "gpu"}
    (container,) = pod["containers"]
    # A GPU cannot be overcommitted: requested and limited alike.
    assert container["resources"]["requests"][GPU_RESOURCE] == "2"
    assert container["resources"]["limits"][GPU_RESOURCE] == "2"
    assert "--tensor-parallel-size" in container["args"]
    claim = graph.named("kubernetes:core/v1:PersistentVolumeClaim", "llm-model-cache").inputs
    # Two replicas read the same weights.
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert graph.outputs_of(component) == {
        "baseUrl": "http://llm.agents.svc.cluster.local:8000/v1",
        "model": "org/model",
    }


def test_devllm_runs_the_app_image_on_cpu() -> None:
    config = LlmConfig(mode="devllm", model="dev")

    def program() -> LlmService:
        return LlmService(
            "llm",
            LlmServiceArgs(
                config=config, namespace="agents", provider=provider(), app_image="app:1"
            ),
        )

    _, graph = evaluate(program)
    pod = graph.named(DEPLOYMENT, "llm-server").inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert (container["image"], container["command"]) == ("app:1", ["agent-app", "devllm"])
    assert "nodeSelector" not in pod
    assert GPU_RESOURCE not in container["resources"]["limits"]
    assert graph.of_type("kubernetes:core/v1:PersistentVolumeClaim") == []


def test_an_external_endpoint_creates_nothing() -> None:
    config = LlmConfig(mode="external", model="gpt", base_url="https://llm.example/v1")
    _, graph = evaluate(
        lambda: LlmService("llm", LlmServiceArgs(config=config, namespace="agents"))
    )
    component = graph.component(LLM)
    assert graph.children(component) == []
    assert graph.outputs_of(component)["baseUrl"] == "https://llm.example/v1"


def test_each_mode_gets_what_it_needs() -> None:
    with pytest.raises(ValueError, match="baseUrl is required when mode is 'external'"):
        LlmConfig(mode="external", model="gpt")
    with pytest.raises(ValueError, match="mode 'vllm' runs in the cluster and needs a provider"):
        LlmServiceArgs(config=LlmConfig(mode="vllm", model="m"), namespace="agents")
    k8s_provider, _ = evaluate(provider)
    with pytest.raises(ValueError, match="devllm runs the app image: app_image is required"):
        LlmServiceArgs(
            config=LlmConfig(mode="devllm", model="m"), namespace="agents", provider=k8s_provider
        )


@pytest.mark.parametrize(
    ("config", "volumes"),
    [
        (LlmConfig(mode="vllm", model="org/model", model_cache_gi=80), ["llm-model-cache"]),
        (LlmConfig(mode="external", model="gpt", base_url="https://llm.example/v1"), []),
    ],
    ids=["vllm", "external"],
)
def test_the_bill_is_the_model_cache(config: LlmConfig, volumes: list[str]) -> None:
    k8s = config.mode != "external"

    def program() -> LlmService:
        args = LlmServiceArgs(
            config=config,
            namespace="agents",
            provider=provider() if k8s else None,
            api_key=KEY if config.mode == "vllm" else None,
        )
        return LlmService("llm", args)

    llm, graph = evaluate(program)
    declared, registered = priced_both_ways(llm.bill, graph)
    assert declared == registered
    items = [i["item"] for i in declared["items"] if i["item"].startswith("Volume")]
    assert items == [f"Volume '{name}' (80 GiB gp3)" for name in volumes]


def _scaled(min_replicas: int) -> tuple[LlmService, Any]:
    config = LlmConfig.model_validate(
        {
            "mode": "vllm",
            "model": "org/model",
            "served_model_name": "chat",
            "max_model_len": 16384,
            "model_revision": "abc123",
            "hub_token_secret": "hub-token",
            "startup_timeout_seconds": 1205,
            "autoscaling": {"min_replicas": min_replicas, "max_replicas": 3},
        }
    )

    def program() -> LlmService:
        return LlmService(
            "llm",
            LlmServiceArgs(
                config=config,
                namespace="agents",
                provider=provider(),
                api_key=KEY,
                prometheus_url="http://prometheus.agents:9090",
                queued_tasks_query="max(agent_queue_depth)",
            ),
        )

    return evaluate(program)


def test_autoscaled_vllm_follows_its_queue_and_kv_cache() -> None:
    llm, graph = _scaled(min_replicas=1)
    deployment = graph.named(DEPLOYMENT, "llm-server").inputs
    # The ScaledObject owns the count.
    assert "replicas" not in deployment["spec"]
    scaled = graph.named("kubernetes:keda.sh/v1alpha1:ScaledObject", "llm-scaledobject").inputs
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "llm"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 3)
    queries = {t["metadata"]["query"]: t for t in spec["triggers"]}
    waiting = queries['sum(vllm:num_requests_waiting{namespace="agents", app="llm"})']
    assert (waiting["metricType"], waiting["metadata"]["threshold"]) == ("AverageValue", "4")
    kv = queries['avg(vllm:kv_cache_usage_perc{namespace="agents", app="llm"})']
    assert (kv["metricType"], kv["metadata"]["threshold"]) == ("Value", "0.85")
    assert {t["metadata"]["serverAddress"] for t in spec["triggers"]} == {
        "http://prometheus.agents:9090"
    }
    # With a replica always up, nothing needs waking.
    assert "max(agent_queue_depth)" not in queries
    # Any replica count: one replica at a time may go.
    pdb = graph.named("kubernetes:policy/v1:PodDisruptionBudget", "llm-pdb").inputs
    assert pdb["spec"]["maxUnavailable"] == 1
    assert llm.model == "chat"


def test_vllm_scaled_to_zero_is_woken_by_the_task_backlog() -> None:
    _, graph = _scaled(min_replicas=0)
    spec = graph.named("kubernetes:keda.sh/v1alpha1:ScaledObject", "llm-scaledobject").inputs[
        "spec"
    ]
    assert spec["minReplicaCount"] == 0
    (wake,) = [t for t in spec["triggers"] if t["metadata"]["query"] == "max(agent_queue_depth)"]
    assert wake["metadata"]["activationThreshold"] == "0"


def test_vllm_starts_from_fetched_weights_and_is_scraped() -> None:
    _, graph = _scaled(min_replicas=1)
    template = graph.named(DEPLOYMENT, "llm-server").inputs["spec"]["template"]
    pod = template["spec"]
    (fetch,) = pod["initContainers"]
    assert fetch["command"][-2:] == ["org/model", "abc123"]
    token = {e["name"]: e for e in fetch["env"]}["HF_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hub-token", "key": "token"}
    assert {"name": "model-cache", "mountPath": "/models"} in fetch["volumeMounts"]
    (server,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    # The server loads what the init container fetched and never reaches the hub.
    assert env["HF_HUB_OFFLINE"] == "1"
    # vLLM refuses requests without the key the workers get from the same Secret.
    (key,) = [e for e in server["env"] if e["name"] == "VLLM_API_KEY"]
    assert key["valueFrom"]["secretKeyRef"] == {"name": "agent-secrets", "key": "llm-api-key"}
    assert env["HF_HOME"] == "/models/hf"
    assert "HF_TOKEN" not in env
    args = server["args"]
    for flag, value in [
        ("--served-model-name", "chat"),
        ("--max-model-len", "16384"),
        ("--revision", "abc123"),
    ]:
        assert args[args.index(flag) + 1] == value
    # 1205 s of loading at one probe every 10 s: 121 tries before liveness takes over.
    probe = server["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 1205
    assert probe["failureThreshold"] == 121
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "8000"
    policy = graph.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", "llm-netpol").inputs
    scrapers = [
        rule
        for rule in policy["spec"]["ingress"]
        if rule["from"][0].get("podSelector", {}).get("matchLabels")
        == {"app.kubernetes.io/name": "prometheus"}
    ]
    assert scrapers
    assert scrapers[0]["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_autoscaling_needs_vllm_and_its_metrics() -> None:
    with pytest.raises(ValueError, match="autoscaling is for mode 'vllm' only"):
        LlmConfig.model_validate(
            {"mode": "devllm", "model": "m", "autoscaling": {"min_replicas": 1, "max_replicas": 2}}
        )
    k8s_provider, _ = evaluate(provider)
    scaled = LlmConfig.model_validate(
        {"mode": "vllm", "model": "m", "autoscaling": {"min_replicas": 0, "max_replicas": 2}}
    )
    with pytest.raises(ValueError, match="prometheus_url is required"):
        LlmServiceArgs(config=scaled, namespace="agents", provider=k8s_provider, api_key=KEY)
    with pytest.raises(ValueError, match="minReplicas 0 needs queued_tasks_query"):
        LlmServiceArgs(
            config=scaled,
            namespace="agents",
            provider=k8s_provider,
            api_key=KEY,
            prometheus_url="http://p",
        )


def test_vllm_without_its_key_is_refused() -> None:
    k8s_provider, _ = evaluate(provider)
    with pytest.raises(ValueError, match="vllm serves only clients with its key"):
        LlmServiceArgs(
            config=LlmConfig(mode="vllm", model="m"), namespace="agents", provider=k8s_provider
        )
