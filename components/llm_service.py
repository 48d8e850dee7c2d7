"""The LLM the agents call, behind an OpenAI-compatible API: a vLLM server on the GPU
pool, the app's deterministic dev server (a stand-in for local work), or an external
endpoint whose key lives in a Secret.

vLLM starts from weights an init container has already put in the model-cache volume
(with the hub token from a Secret, when the model is gated), behind a startup probe sized
for loading them. With `autoscaling`, a KEDA ScaledObject sets its replicas from vLLM's
own signals, read from Prometheus (which scrapes every replica): requests queued per
replica and KV-cache use; with `minReplicas: 0` the agent's task backlog wakes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apps.v1 import Deployment, DeploymentSpecArgs
from pulumi_kubernetes.core.v1 import (
    ContainerArgs,
    ContainerPortArgs,
    EmptyDirVolumeSourceArgs,
    EnvVarArgs,
    EnvVarSourceArgs,
    HTTPGetActionArgs,
    PersistentVolumeClaim,
    PersistentVolumeClaimSpecArgs,
    PersistentVolumeClaimVolumeSourceArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    SecretKeySelectorArgs,
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
from pydantic import Field, model_validator

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
from components.values import (
    ArgsModel,
    ImageReference,
    InputStr,
    PositiveInt,
    Resources,
    SecretKeyRef,
    VolumeClaim,
)

LLM_NAME = "llm"
LLM_PORT = 8000
LLM_UID = 1000
# The newest vLLM release on 2026-12-04. Its V1 engine exports the metrics the autoscaler
# and the alerts read (vllm:num_requests_waiting, vllm:kv_cache_usage_perc).
VLLM_IMAGE = "vllm/vllm-openai:v0.34.0"
MODEL_CACHE = "/models"
HF_HOME = f"{MODEL_CACHE}/hf"
HUB_TOKEN_KEY = "token"  # noqa: S105 - a key name
STARTUP_PROBE_PERIOD_SECONDS = 10
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
    init_containers: list[ContainerArgs] | None = None
    annotations: dict[str, str] | None = None


class LlmAutoscaling(ArgsModel):
    """vLLM's replicas follow its own load: the stack file's `llm.autoscaling`."""

    # 0 lets an idle dev cluster give its GPUs back; the task backlog wakes it.
    min_replicas: Annotated[int, Field(ge=0, strict=True)]
    max_replicas: PositiveInt
    # Requests waiting in vLLM's queue, per replica, before another is added.
    waiting_per_replica: PositiveInt = 4
    # Average KV-cache use (0-1] above which another replica is added: a full cache makes
    # vLLM preempt and recompute, which queues nothing yet slows every request.
    kv_cache_utilization: Annotated[float, Field(gt=0, le=1)] = 0.85
    # Agent tasks waiting per replica: what scales vLLM from zero.
    queued_tasks_per_replica: PositiveInt = 20
    # A GPU replica takes minutes to start: keep it this long after the load goes.
    cooldown_seconds: Annotated[int, Field(ge=60, strict=True)] = 900

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas {self.min_replicas} is greater than maxReplicas {self.max_replicas}"
            )
        return self


class LlmConfig(ArgsModel):
    """Which LLM the agents call: the stack file's `llm` section."""

    mode: Literal["vllm", "external", "devllm"]
    model: str
    # The name the server answers to (vLLM's --served-model-name); the model by default.
    served_model_name: str | None = None
    # The hub revision (commit or tag) of the weights: pinned weights, like pinned images.
    model_revision: str | None = None
    # vLLM's --max-model-len: the longest context it accepts (the model's own when unset).
    max_model_len: PositiveInt | None = None
    # A Secret in the namespace whose `token` key is the model hub's token (gated models).
    hub_token_secret: str | None = None
    # How long vLLM may take to load its weights before liveness checks begin.
    startup_timeout_seconds: Annotated[int, Field(ge=60, le=7200, strict=True)] = 1800
    vllm_image: ImageReference = VLLM_IMAGE
    gpus_per_replica: PositiveInt = 1
    replicas: PositiveInt = 1
    autoscaling: LlmAutoscaling | None = None
    model_cache_gi: PositiveInt = 100
    base_url: str | None = None
    resources: Resources = Resources(
        cpu_request="2", cpu_limit="4", memory_request="12Gi", memory_limit="14Gi"
    )

    @model_validator(mode="after")
    def _external_has_url(self) -> Self:
        if self.mode == "external" and not self.base_url:
            raise ValueError("baseUrl is required when mode is 'external'")
        if self.autoscaling is not None and self.mode != "vllm":
            raise ValueError("autoscaling is for mode 'vllm' only")
        return self

    @property
    def served_model(self) -> str:
        return self.served_model_name or self.model

    @property
    def max_replicas(self) -> int:
        return self.autoscaling.max_replicas if self.autoscaling else self.replicas


class LlmServiceArgs(ArgsModel):
    config: LlmConfig
    namespace: str
    provider: k8s.Provider | None = None
    # The agent image also serves `agent-app devllm`.
    app_image: InputStr | None = None
    # Where the ScaledObject reads vLLM's metrics (with `autoscaling`), and the query
    # that counts the agent's waiting tasks (what wakes vLLM from zero).
    prometheus_url: InputStr | None = None
    queued_tasks_query: str | None = None
    # vLLM answers only requests that carry this key (VLLM_API_KEY); the agent's workers
    # read the same Secret key.
    api_key: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _what_the_mode_needs(self) -> Self:
        if self.config.mode != "external" and self.provider is None:
            raise ValueError(f"mode {self.config.mode!r} runs in the cluster and needs a provider")
        if self.config.mode == "devllm" and self.app_image is None:
            raise ValueError("devllm runs the app image: app_image is required")
        if self.config.mode == "vllm" and self.api_key is None:
            raise ValueError("vllm serves only clients with its key: api_key is required")
        if self.config.autoscaling is not None and self.prometheus_url is None:
            raise ValueError("autoscaling reads vLLM's metrics: prometheus_url is required")
        if (
            self.config.autoscaling is not None
            and self.config.autoscaling.min_replicas == 0
            and self.queued_tasks_query is None
        ):
            raise ValueError("minReplicas 0 needs queued_tasks_query to wake vLLM")
        return self


class LlmService(pulumi.ComponentResource):
    """Exposes `base_url` (OpenAI-compatible, ending in /v1) and `model`, the name to ask
    for."""

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
        self.model = config.served_model
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
        parts = (
            self._vllm(config, args.api_key)
            if config.mode == "vllm"
            else self._devllm(args.app_image)
        )
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
        scaled = config.autoscaling is not None
        deployment = Deployment(
            f"{name}-server",
            metadata=ObjectMetaArgs(name=LLM_NAME, namespace=ns, labels=app_labels),
            spec=DeploymentSpecArgs(
                # With autoscaling the ScaledObject owns the count.
                replicas=None if scaled else config.replicas,
                selector=match_labels(selector(LLM_NAME)),
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=app_labels, annotations=parts.annotations),
                    spec=PodSpecArgs(
                        init_containers=parts.init_containers,
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
        if config.max_replicas > 1:
            # One replica at a time may go, whatever the count the autoscaler chose.
            PodDisruptionBudget(
                f"{name}-pdb",
                metadata=ObjectMetaArgs(name=LLM_NAME, namespace=ns, labels=app_labels),
                spec=PodDisruptionBudgetSpecArgs(
                    max_unavailable=1, selector=match_labels(selector(LLM_NAME))
                )
                if scaled
                else PodDisruptionBudgetSpecArgs(
                    min_available=config.replicas - 1, selector=match_labels(selector(LLM_NAME))
                ),
                opts=opts,
            )
        NetworkPolicy(
            f"{name}-netpol",
            metadata=ObjectMetaArgs(name="llm-clients-only", namespace=ns, labels=app_labels),
            # Prometheus scrapes vLLM's /metrics on its API port.
            spec=agent_clients_only(
                LLM_NAME, LLM_PORT, scraped_on=LLM_PORT if config.mode == "vllm" else None
            ),
            opts=opts,
        )
        if config.autoscaling is not None:
            self._scaled_object(name, args, config.autoscaling, deployment, opts)
        return pulumi.Output.concat(
            "http://", service.metadata.name, ".", ns, f".svc.cluster.local:{LLM_PORT}/v1"
        )

    def _scaled_object(
        self,
        name: str,
        args: LlmServiceArgs,
        scaling: LlmAutoscaling,
        deployment: Deployment,
        opts: pulumi.ResourceOptions,
    ) -> None:
        ns = args.namespace
        on_llm = f'namespace="{ns}", app="{LLM_NAME}"'
        triggers: list[dict[str, Any]] = [
            _prometheus_trigger(
                args.prometheus_url,
                f"sum(vllm:num_requests_waiting{{{on_llm}}})",
                threshold=str(scaling.waiting_per_replica),
                metric_type="AverageValue",
            ),
            # The mean over replicas against a target: the HPA's Value arithmetic.
            _prometheus_trigger(
                args.prometheus_url,
                f"avg(vllm:kv_cache_usage_perc{{{on_llm}}})",
                threshold=f"{scaling.kv_cache_utilization:g}",
                metric_type="Value",
            ),
        ]
        if scaling.min_replicas == 0:
            assert args.queued_tasks_query is not None  # LlmServiceArgs requires it
            triggers.append(
                _prometheus_trigger(
                    args.prometheus_url,
                    args.queued_tasks_query,
                    threshold=str(scaling.queued_tasks_per_replica),
                    metric_type="AverageValue",
                    activation="0",
                )
            )
        k8s.apiextensions.CustomResource(
            f"{name}-scaledobject",
            api_version="keda.sh/v1alpha1",
            kind="ScaledObject",
            metadata=ObjectMetaArgs(
                name=LLM_NAME, namespace=ns, labels=labels(LLM_NAME, "autoscaling")
            ),
            spec={
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment.metadata.name,
                },
                "minReplicaCount": scaling.min_replicas,
                "maxReplicaCount": scaling.max_replicas,
                "pollingInterval": 15,
                "cooldownPeriod": scaling.cooldown_seconds,
                "advanced": {
                    "horizontalPodAutoscalerConfig": {
                        "behavior": {
                            # One GPU replica at a time each way: each costs minutes to
                            # start and a GPU node to hold.
                            "scaleUp": {
                                "stabilizationWindowSeconds": 60,
                                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                            },
                            "scaleDown": {
                                "stabilizationWindowSeconds": scaling.cooldown_seconds,
                                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
                            },
                        }
                    }
                },
                "triggers": triggers,
            },
            opts=opts,
        )

    @staticmethod
    def _vllm(config: LlmConfig, api_key: SecretKeyRef | None) -> _PodParts:
        gpus = str(config.gpus_per_replica)
        hub_env = [
            EnvVarArgs(name="HF_HOME", value=HF_HOME),
            EnvVarArgs(name="HOME", value="/tmp"),
            EnvVarArgs(name="XDG_CACHE_HOME", value="/tmp/cache"),
        ]
        token = (
            [
                # Env on purpose (third-party image): the download job's huggingface_hub
                # reads the token from HF_TOKEN.
                EnvVarArgs(
                    name="HF_TOKEN",
                    value_from=EnvVarSourceArgs(
                        secret_key_ref=SecretKeySelectorArgs(
                            name=config.hub_token_secret, key=HUB_TOKEN_KEY
                        )
                    ),
                )
            ]
            if config.hub_token_secret
            else []
        )
        revision = config.model_revision
        # The weights land in the cache before the server starts, so a new replica (or a
        # restarted one) loads from the volume; the server itself then runs offline.
        download = ContainerArgs(
            name="fetch-weights",
            image=config.vllm_image,
            command=["python3", "-c", _DOWNLOAD_WEIGHTS, config.model, revision or ""],
            env=[*hub_env, *token],
            resources=ResourceRequirementsArgs(
                requests={"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "256Mi"},
                limits={"cpu": "2", "memory": "4Gi", "ephemeral-storage": "1Gi"},
            ),
            security_context=restricted_container_security(),
            volume_mounts=[
                VolumeMountArgs(name="model-cache", mount_path=MODEL_CACHE),
                VolumeMountArgs(name="tmp", mount_path="/tmp"),
            ],
        )
        server_args = [
            "--model",
            config.model,
            "--served-model-name",
            config.served_model,
            "--port",
            str(LLM_PORT),
            "--tensor-parallel-size",
            gpus,
        ]
        if revision:
            server_args += ["--revision", revision]
        if config.max_model_len:
            server_args += ["--max-model-len", str(config.max_model_len)]
        container = ContainerArgs(
            name="vllm",
            image=config.vllm_image,
            args=server_args,
            env=[
                *hub_env,
                EnvVarArgs(name="HF_HUB_OFFLINE", value="1"),
                EnvVarArgs(name="VLLM_NO_USAGE_STATS", value="1"),
                *(
                    [
                        # Env on purpose (third-party image): vLLM takes its key from
                        # VLLM_API_KEY or `--api-key` (argv, visible in `ps`), no file.
                        EnvVarArgs(
                            name="VLLM_API_KEY",
                            value_from=EnvVarSourceArgs(
                                secret_key_ref=SecretKeySelectorArgs(
                                    name=api_key.name, key=api_key.key
                                )
                            ),
                        )
                    ]
                    if api_key
                    else []
                ),
            ],
            ports=[ContainerPortArgs(name="http", container_port=LLM_PORT)],
            resources=config.resources.as_kubernetes(extended={GPU_RESOURCE: gpus}),
            security_context=restricted_container_security(),
            # Loading weights onto the GPU takes minutes: the startup probe allows
            # startupTimeoutSeconds before liveness may restart the server.
            startup_probe=ProbeArgs(
                http_get=HTTPGetActionArgs(path="/health", port="http"),
                period_seconds=STARTUP_PROBE_PERIOD_SECONDS,
                failure_threshold=-(
                    -config.startup_timeout_seconds // STARTUP_PROBE_PERIOD_SECONDS
                ),
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
                VolumeMountArgs(name="model-cache", mount_path=MODEL_CACHE),
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
        scrape = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(LLM_PORT),
            "prometheus.io/path": "/metrics",
        }
        return _PodParts(
            container,
            volumes,
            gpu_tolerations(),
            gpu_node_selector(),
            init_containers=[download],
            annotations=scrape,
        )

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


# Run by the init container with the image's own huggingface_hub: fetch the weights (and
# nothing else of the repo's) into HF_HOME on the model-cache volume; a repeat finds them
# there and downloads nothing.
_DOWNLOAD_WEIGHTS = """
import sys
from huggingface_hub import snapshot_download
model, revision = sys.argv[1], sys.argv[2] or None
snapshot_download(
    model,
    revision=revision,
    allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"],
)
"""


def _prometheus_trigger(
    server: pulumi.Input[str] | None,
    query: str,
    *,
    threshold: str,
    metric_type: Literal["AverageValue", "Value"],
    activation: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"serverAddress": server, "query": query, "threshold": threshold}
    if activation is not None:
        metadata["activationThreshold"] = activation
    return {"type": "prometheus", "metricType": metric_type, "metadata": metadata}
