"""The LLM the agents call, behind an OpenAI-compatible API: a vLLM server on the GPU
pool, the app's deterministic dev server (a stand-in for local work), or an external
endpoint whose key lives in a Secret."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Self

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apps.v1 import Deployment, DeploymentSpecArgs
from pulumi_kubernetes.core.v1 import (
    ContainerArgs,
    ContainerPortArgs,
    EmptyDirVolumeSourceArgs,
    EnvVarArgs,
    HTTPGetActionArgs,
    PersistentVolumeClaim,
    PersistentVolumeClaimSpecArgs,
    PersistentVolumeClaimVolumeSourceArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    Service,
    ServicePortArgs,
    ServiceSpecArgs,
    TolerationArgs,
    VolumeArgs,
    VolumeMountArgs,
    VolumeResourceRequirementsArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import NetworkPolicy
from pulumi_kubernetes.policy.v1 import PodDisruptionBudget, PodDisruptionBudgetSpecArgs
from pydantic import model_validator

from components.billing import Billable, Volume
from components.kube import (
    GPU_RESOURCE,
    agent_clients_only,
    child_options,
    gpu_node_selector,
    gpu_tolerations,
    labels,
    match_labels,
    restricted_container_security,
    restricted_pod_security,
    selector,
    spread_over_zones_and_nodes,
)
from components.values import ArgsModel, InputStr, PositiveInt, Resources, VolumeClaim

LLM_NAME = "llm"
LLM_PORT = 8000
LLM_UID = 1000
DEVLLM_RESOURCES = ResourceRequirementsArgs(
    requests={"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
    limits={"cpu": "500m", "memory": "256Mi", "ephemeral-storage": "256Mi"},
)


@dataclass(frozen=True)
class _PodParts:
    """What the server's mode decides in its pod: the container, the volumes, and
    (for the GPU server) where it may be scheduled."""

    container: ContainerArgs
    volumes: list[VolumeArgs]
    tolerations: list[TolerationArgs] | None = None
    node_selector: dict[str, str] | None = None


class LlmConfig(ArgsModel):
    """Which LLM the agents call: the stack file's `llm` section."""

    mode: Literal["vllm", "external", "devllm"]
    model: str
    vllm_image: str = "vllm/vllm-openai:v0.6.4"
    gpus_per_replica: PositiveInt = 1
    replicas: PositiveInt = 1
    model_cache_gi: PositiveInt = 100
    base_url: str | None = None
    resources: Resources = Resources(
        cpu_request="2", cpu_limit="4", memory_request="12Gi", memory_limit="14Gi"
    )

    @model_validator(mode="after")
    def _external_has_url(self) -> Self:
        if self.mode == "external" and not self.base_url:
            raise ValueError("baseUrl is required when mode is 'external'")
        return self


class LlmServiceArgs(ArgsModel):
    config: LlmConfig
    namespace: str
    provider: k8s.Provider | None = None
    # The agent image also serves `agent-app devllm`.
    app_image: InputStr | None = None

    @model_validator(mode="after")
    def _what_the_mode_needs(self) -> Self:
        if self.config.mode != "external" and self.provider is None:
            raise ValueError(f"mode {self.config.mode!r} runs in the cluster and needs a provider")
        if self.config.mode == "devllm" and self.app_image is None:
            raise ValueError("devllm runs the app image: app_image is required")
        return self


class LlmService(pulumi.ComponentResource):
    base_url: pulumi.Output[str]
    model: str
    # The model cache's claim (vLLM only).
    volume_claims: list[VolumeClaim]
    # What the model cache is billed by (vLLM only).
    bill: list[Billable]

    def __init__(
        self, name: str, args: LlmServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:llm:LlmService", name, None, opts)
        config = args.config
        self.model = config.model
        self.volume_claims = []
        self.bill = []
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
        parts = self._vllm(config) if config.mode == "vllm" else self._devllm(args.app_image)
        volumes = list(parts.volumes)
        if config.mode == "vllm":
            # Every replica reads the same weights; EFS-backed ReadWriteMany in EKS.
            access_modes = ("ReadWriteMany",) if config.replicas > 1 else ("ReadWriteOnce",)
            self.volume_claims = [
                VolumeClaim(
                    namespace=ns,
                    name="llm-model-cache",
                    size_gi=config.model_cache_gi,
                    access_modes=access_modes,
                )
            ]
            self.bill = [Volume(name="llm-model-cache", size_gib=float(config.model_cache_gi))]
            claim = PersistentVolumeClaim(
                f"{name}-model-cache",
                metadata=ObjectMetaArgs(name="llm-model-cache", namespace=ns, labels=app_labels),
                spec=PersistentVolumeClaimSpecArgs(
                    access_modes=list(access_modes),
                    resources=VolumeResourceRequirementsArgs(
                        requests={"storage": f"{config.model_cache_gi}Gi"}
                    ),
                ),
                opts=opts,
            )
            volumes.append(
                VolumeArgs(
                    name="model-cache",
                    persistent_volume_claim=PersistentVolumeClaimVolumeSourceArgs(
                        claim_name=claim.metadata.name
                    ),
                )
            )
        Deployment(
            f"{name}-server",
            metadata=ObjectMetaArgs(name=LLM_NAME, namespace=ns, labels=app_labels),
            spec=DeploymentSpecArgs(
                replicas=config.replicas,
                selector=match_labels(selector(LLM_NAME)),
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=app_labels),
                    spec=PodSpecArgs(
                        automount_service_account_token=False,
                        security_context=restricted_pod_security(LLM_UID),
                        topology_spread_constraints=spread_over_zones_and_nodes(selector(LLM_NAME)),
                        containers=[parts.container],
                        volumes=volumes,
                        tolerations=parts.tolerations,
                        node_selector=parts.node_selector,
                    ),
                ),
            ),
            opts=opts,
        )
        service = Service(
            f"{name}-service",
            metadata=ObjectMetaArgs(name=LLM_NAME, namespace=ns, labels=app_labels),
            spec=ServiceSpecArgs(
                selector=selector(LLM_NAME),
                ports=[ServicePortArgs(name="http", port=LLM_PORT, target_port="http")],
            ),
            opts=opts,
        )
        if config.replicas > 1:
            PodDisruptionBudget(
                f"{name}-pdb",
                metadata=ObjectMetaArgs(name=LLM_NAME, namespace=ns, labels=app_labels),
                spec=PodDisruptionBudgetSpecArgs(
                    min_available=config.replicas - 1, selector=match_labels(selector(LLM_NAME))
                ),
                opts=opts,
            )
        NetworkPolicy(
            f"{name}-netpol",
            metadata=ObjectMetaArgs(name="llm-clients-only", namespace=ns, labels=app_labels),
            spec=agent_clients_only(LLM_NAME, LLM_PORT),
            opts=opts,
        )
        return pulumi.Output.concat(
            "http://", service.metadata.name, ".", ns, f".svc.cluster.local:{LLM_PORT}/v1"
        )

    @staticmethod
    def _vllm(config: LlmConfig) -> _PodParts:
        gpus = str(config.gpus_per_replica)
        container = ContainerArgs(
            name="vllm",
            image=config.vllm_image,
            args=[
                "--model",
                config.model,
                "--port",
                str(LLM_PORT),
                "--tensor-parallel-size",
                gpus,
                "--download-dir",
                "/models",
            ],
            env=[
                EnvVarArgs(name="HF_HOME", value="/models/hf"),
                EnvVarArgs(name="HOME", value="/tmp"),
                EnvVarArgs(name="XDG_CACHE_HOME", value="/tmp/cache"),
                EnvVarArgs(name="VLLM_NO_USAGE_STATS", value="1"),
            ],
            ports=[ContainerPortArgs(name="http", container_port=LLM_PORT)],
            resources=config.resources.as_kubernetes(extended={GPU_RESOURCE: gpus}),
            security_context=restricted_container_security(),
            # Loading weights takes minutes: the startup probe holds off the others.
            startup_probe=ProbeArgs(
                http_get=HTTPGetActionArgs(path="/health", port="http"),
                period_seconds=10,
                failure_threshold=90,
            ),
            liveness_probe=ProbeArgs(
                http_get=HTTPGetActionArgs(path="/health", port="http"),
                period_seconds=15,
                failure_threshold=4,
            ),
            readiness_probe=ProbeArgs(
                http_get=HTTPGetActionArgs(path="/v1/models", port="http"), period_seconds=10
            ),
            volume_mounts=[
                VolumeMountArgs(name="model-cache", mount_path="/models"),
                VolumeMountArgs(name="shm", mount_path="/dev/shm"),
                VolumeMountArgs(name="tmp", mount_path="/tmp"),
            ],
        )
        volumes = [
            # NCCL and PyTorch workers share tensors through /dev/shm.
            VolumeArgs(
                name="shm", empty_dir=EmptyDirVolumeSourceArgs(medium="Memory", size_limit="8Gi")
            ),
            VolumeArgs(name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="4Gi")),
        ]
        return _PodParts(container, volumes, gpu_tolerations(), gpu_node_selector())

    @staticmethod
    def _devllm(image: pulumi.Input[str] | None) -> _PodParts:
        container = ContainerArgs(
            name="devllm",
            image=image,
            command=["agent-app", "devllm"],
            env=[EnvVarArgs(name="AGENT_DEVLLM_PORT", value=str(LLM_PORT))],
            ports=[ContainerPortArgs(name="http", container_port=LLM_PORT)],
            resources=DEVLLM_RESOURCES,
            security_context=restricted_container_security(),
            liveness_probe=ProbeArgs(
                http_get=HTTPGetActionArgs(path="/health", port="http"), period_seconds=15
            ),
            readiness_probe=ProbeArgs(
                http_get=HTTPGetActionArgs(path="/v1/models", port="http"), period_seconds=5
            ),
            volume_mounts=[VolumeMountArgs(name="tmp", mount_path="/tmp")],
        )
        volumes = [VolumeArgs(name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="64Mi"))]
        return _PodParts(container, volumes)
