"""LlmService: vLLM on the GPU pool, the dev stand-in from the app image, or an external
endpoint."""

from __future__ import annotations

import pytest
from component_mocks import evaluate, priced_both_ways, provider

from components.kube import GPU_POOL_LABEL, GPU_RESOURCE
from components.llm_service import LlmConfig, LlmService, LlmServiceArgs

LLM = "agent-platform:llm:LlmService"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def test_vllm_runs_on_the_gpu_pool_with_a_shared_model_cache() -> None:
    config = LlmConfig(mode="vllm", model="org/model", replicas=2, gpus_per_replica=2)

    def program() -> LlmService:
        return LlmService(
            "llm", LlmServiceArgs(config=config, namespace="agents", provider=provider())
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
            config=config, namespace="agents", provider=provider() if k8s else None
        )
        return LlmService("llm", args)

    llm, graph = evaluate(program)
    declared, registered = priced_both_ways(llm.bill, graph)
    assert declared == registered
    items = [i["item"] for i in declared["items"] if i["item"].startswith("Volume")]
    assert items == [f"Volume '{name}' (80 GiB gp3)" for name in volumes]
