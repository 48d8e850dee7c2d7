"""The LLM the agents call, behind an OpenAI-compatible API: a vLLM server on the GPU
pool, the app's deterministic dev server (a stand-in for local work), or an external
endpoint whose key lives in a Secret."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import k8s_objects
from components.kube import (
    GPU_RESOURCE,
    agent_clients_only,
    child_options,
    gpu_node_selector,
    gpu_tolerations,
    labels,
    restricted_container_security,
    restricted_pod_security,
    selector,
    spread_over_zones_and_nodes,
)
from stacks.config import LlmConfig

LLM_NAME = "llm"
LLM_PORT = 8000
LLM_UID = 1000
DEVLLM_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi", "ephemeral-storage": "256Mi"},
}


@dataclass(frozen=True)
class LlmServiceArgs:
    config: LlmConfig
    namespace: str
    provider: k8s.Provider | None = None
    # The agent image also serves `agent-app devllm`.
    app_image: pulumi.Input[str] | None = None

    def __post_init__(self) -> None:
        if self.config.mode != "external" and self.provider is None:
            raise ValueError(f"mode {self.config.mode!r} runs in the cluster and needs a provider")
        if self.config.mode == "devllm" and self.app_image is None:
            raise ValueError("devllm runs the app image: app_image is required")


class LlmService(pulumi.ComponentResource):
    base_url: pulumi.Output[str]
    model: str

    def __init__(
        self, name: str, args: LlmServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:llm:LlmService", name, None, opts)
        config = args.config
        self.model = config.model
        if config.mode == "external":
            assert config.base_url is not None  # guaranteed by LlmConfig validation
            self.base_url = pulumi.Output.from_input(config.base_url)
        else:
            self.base_url = self._in_cluster(name, args, opts)
        self.register_outputs({"baseUrl": self.base_url, "model": self.model})

    def _in_cluster(
        self, name: str, args: LlmServiceArgs, component_opts: pulumi.ResourceOptions | None
    ) -> pulumi.Output[str]:
        config = args.config
        opts = child_options(self, component_opts, provider=args.provider)
        ns = args.namespace
        app_labels = labels(LLM_NAME, "llm", **{"agent-platform.io/llm-mode": config.mode})
        container, pod_extra, volumes = (
            self._vllm(config) if config.mode == "vllm" else self._devllm(args.app_image)
        )
        claim: k8s_objects.PersistentVolumeClaim | None = None
        if config.mode == "vllm":
            claim = k8s_objects.PersistentVolumeClaim(
                f"{name}-model-cache",
                metadata={"name": "llm-model-cache", "namespace": ns, "labels": app_labels},
                spec={
                    # Every replica reads the same weights; EFS-backed ReadWriteMany in EKS.
                    "accessModes": ["ReadWriteMany"] if config.replicas > 1 else ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": f"{config.model_cache_gi}Gi"}},
                },
                opts=opts,
            )
            volumes.append(
                {
                    "name": "model-cache",
                    "persistentVolumeClaim": {"claimName": claim.metadata["name"]},
                }
            )
        k8s_objects.Deployment(
            f"{name}-server",
            metadata={"name": LLM_NAME, "namespace": ns, "labels": app_labels},
            spec={
                "replicas": config.replicas,
                "selector": {"matchLabels": selector(LLM_NAME)},
                "template": {
                    "metadata": {"labels": app_labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": restricted_pod_security(LLM_UID),
                        "topologySpreadConstraints": spread_over_zones_and_nodes(
                            selector(LLM_NAME)
                        ),
                        "containers": [container],
                        "volumes": volumes,
                        **pod_extra,
                    },
                },
            },
            opts=opts,
        )
        service = k8s_objects.Service(
            f"{name}-service",
            metadata={"name": LLM_NAME, "namespace": ns, "labels": app_labels},
            spec={
                "selector": selector(LLM_NAME),
                "ports": [{"name": "http", "port": LLM_PORT, "targetPort": "http"}],
            },
            opts=opts,
        )
        if config.replicas > 1:
            k8s_objects.PodDisruptionBudget(
                f"{name}-pdb",
                metadata={"name": LLM_NAME, "namespace": ns, "labels": app_labels},
                spec={
                    "minAvailable": config.replicas - 1,
                    "selector": {"matchLabels": selector(LLM_NAME)},
                },
                opts=opts,
            )
        k8s_objects.NetworkPolicy(
            f"{name}-netpol",
            metadata={"name": "llm-clients-only", "namespace": ns, "labels": app_labels},
            spec=agent_clients_only(LLM_NAME, LLM_PORT),
            opts=opts,
        )
        return pulumi.Output.concat(
            "http://", service.metadata["name"], ".", ns, f".svc.cluster.local:{LLM_PORT}/v1"
        )

    @staticmethod
    def _vllm(config: LlmConfig) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        gpus = str(config.gpus_per_replica)
        resources = config.resources.as_kubernetes()
        # Extended resources cannot be overcommitted: requests must equal limits.
        resources["limits"][GPU_RESOURCE] = gpus
        resources["requests"][GPU_RESOURCE] = gpus
        container = {
            "name": "vllm",
            "image": config.vllm_image,
            "args": [
                "--model",
                config.model,
                "--port",
                str(LLM_PORT),
                "--tensor-parallel-size",
                gpus,
                "--download-dir",
                "/models",
            ],
            "env": [
                {"name": "HF_HOME", "value": "/models/hf"},
                {"name": "HOME", "value": "/tmp"},
                {"name": "XDG_CACHE_HOME", "value": "/tmp/cache"},
                {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
            ],
            "ports": [{"name": "http", "containerPort": LLM_PORT}],
            "resources": resources,
            "securityContext": restricted_container_security(),
            # Loading weights takes minutes: the startup probe holds off the others.
            "startupProbe": {
                "httpGet": {"path": "/health", "port": "http"},
                "periodSeconds": 10,
                "failureThreshold": 90,
            },
            "livenessProbe": {
                "httpGet": {"path": "/health", "port": "http"},
                "periodSeconds": 15,
                "failureThreshold": 4,
            },
            "readinessProbe": {
                "httpGet": {"path": "/v1/models", "port": "http"},
                "periodSeconds": 10,
            },
            "volumeMounts": [
                {"name": "model-cache", "mountPath": "/models"},
                {"name": "shm", "mountPath": "/dev/shm"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }
        pod = {"tolerations": gpu_tolerations(), "nodeSelector": gpu_node_selector()}
        volumes: list[dict[str, Any]] = [
            # NCCL and PyTorch workers share tensors through /dev/shm.
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
        ]
        return container, pod, volumes

    @staticmethod
    def _devllm(
        image: pulumi.Input[str] | None,
    ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        container = {
            "name": "devllm",
            "image": image,
            "command": ["agent-app", "devllm"],
            "env": [{"name": "AGENT_DEVLLM_PORT", "value": str(LLM_PORT)}],
            "ports": [{"name": "http", "containerPort": LLM_PORT}],
            "resources": DEVLLM_RESOURCES,
            "securityContext": restricted_container_security(),
            "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 15},
            "readinessProbe": {
                "httpGet": {"path": "/v1/models", "port": "http"},
                "periodSeconds": 5,
            },
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
        return container, {}, [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
