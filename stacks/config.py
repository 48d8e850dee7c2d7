"""The typed stack configuration.

Every `agent-platform:*` key of the stack's Pulumi config is read once, here, into one
pydantic model. A bad stack file fails before any resource is registered, with one
error that lists every problem under its config key, so nobody fixes them one
`pulumi preview` at a time.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pulumi_kubernetes.core.v1 import ResourceRequirementsArgs
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components.gpu_instances import GPU_INSTANCE_TYPES
from components.quantity import parse_quantity

NAMESPACE = "agent-platform"
SECRET_KEYS = frozenset({"redisPassword", "appApiKeys", "modelApiKey"})


class Environment(StrEnum):
    LOCAL = "local"
    DEV = "dev"
    PROD = "prod"


class ConfigError(ValueError):
    """Every problem with a stack's config, each under its full config key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid stack config ({len(self.problems)} problem(s)):\n{lines}")


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        # An infinite budget or size is never meant; JSON and YAML both can spell one.
        allow_inf_nan=False,
    )


def _quantity(value: str) -> str:
    parse_quantity(value)
    return value


Quantity = Annotated[str, AfterValidator(_quantity)]
# Strict: lax ints would read `true` as 1 and "2" as 2, hiding a wrong type in the file.
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]
Percent = Annotated[int, Field(ge=1, le=100, strict=True)]
PositiveUsd = Annotated[float, Field(gt=0, strict=True)]


class Resources(_Model):
    """Container requests and limits, in Kubernetes quantities."""

    cpu_request: Quantity
    cpu_limit: Quantity
    memory_request: Quantity
    memory_limit: Quantity
    ephemeral_storage_limit: Quantity = "1Gi"

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Self:
        if parse_quantity(self.cpu_request) > parse_quantity(self.cpu_limit):
            raise ValueError(f"cpuRequest {self.cpu_request} exceeds cpuLimit {self.cpu_limit}")
        if parse_quantity(self.memory_request) > parse_quantity(self.memory_limit):
            raise ValueError(
                f"memoryRequest {self.memory_request} exceeds memoryLimit {self.memory_limit}"
            )
        return self

    def as_kubernetes(self, extended: Mapping[str, str] | None = None) -> ResourceRequirementsArgs:
        """The container's requirements; `extended` resources (GPUs) cannot be
        overcommitted, so each is both requested and limited."""
        return ResourceRequirementsArgs(
            requests={
                "cpu": self.cpu_request,
                "memory": self.memory_request,
                "ephemeral-storage": "64Mi",
                **(extended or {}),
            },
            limits={
                "cpu": self.cpu_limit,
                "memory": self.memory_limit,
                "ephemeral-storage": self.ephemeral_storage_limit,
                **(extended or {}),
            },
        )


class Scaling(_Model):
    """min <= desired <= max, as for an EKS managed node group."""

    min_size: NonNegativeInt
    desired_size: NonNegativeInt
    max_size: PositiveInt

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_size > self.max_size:
            raise ValueError(f"minSize {self.min_size} is greater than maxSize {self.max_size}")
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"desiredSize {self.desired_size} is outside "
                f"minSize..maxSize ({self.min_size}..{self.max_size})"
            )
        return self


class SystemPoolConfig(_Model):
    instance_type: str = "m6i.large"
    scaling: Scaling = Scaling(min_size=2, desired_size=2, max_size=4)


class GpuPoolConfig(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
    instance_types: Annotated[list[str], Field(min_length=1)]
    capacity_type: Literal["SPOT", "ON_DEMAND"]
    scaling: Scaling

    @field_validator("instance_types")
    @classmethod
    def _known_gpu_types(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in GPU_INSTANCE_TYPES]
        if unknown:
            known = ", ".join(sorted(GPU_INSTANCE_TYPES))
            raise ValueError(f"unknown GPU instance type(s) {unknown}; known: {known}")
        return value


class ClusterConfig(_Model):
    """The AWS network and EKS cluster (dev and prod)."""

    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]
    availability_zones: Annotated[int, Field(ge=2, le=6, strict=True)]
    vpc_cidr: ipaddress.IPv4Network
    kubernetes_version: Annotated[str, Field(pattern=r"^1\.\d{2}$")] = "1.31"
    private_endpoint: bool = False
    public_access_cidrs: list[ipaddress.IPv4Network] = Field(
        default_factory=lambda: [ipaddress.IPv4Network("0.0.0.0/0")]
    )
    system_pool: SystemPoolConfig = SystemPoolConfig()

    @field_validator("vpc_cidr")
    @classmethod
    def _room_for_subnets(cls, value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if value.prefixlen > 20:
            raise ValueError(f"{value} is too small: use a /20 or larger for per-AZ subnets")
        return value


class LocalKubernetesConfig(_Model):
    """The `local` stack's target: a render directory, or a kubeconfig context."""

    render_directory: str = "build/manifests/local"
    secrets_directory: str = "build/secrets/local"
    kubeconfig_context: str | None = None


class RedisConfig(_Model):
    mode: Literal["in-cluster", "elasticache"]
    image: str = "redis:7.4.1-alpine3.20"
    storage_gi: PositiveInt = 8
    node_type: str = "cache.t4g.medium"
    num_cache_clusters: PositiveInt = 2
    resources: Resources = Resources(
        cpu_request="100m", cpu_limit="500m", memory_request="256Mi", memory_limit="512Mi"
    )


class AgentConfig(_Model):
    image_repository: str = "agent-platform/agent-app"
    image_tag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]
    version: Annotated[str, Field(min_length=1, max_length=63)]
    api: Resources = Resources(
        cpu_request="250m", cpu_limit="1", memory_request="256Mi", memory_limit="512Mi"
    )
    worker: Resources = Resources(
        cpu_request="250m", cpu_limit="1", memory_request="256Mi", memory_limit="512Mi"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("image_tag")
    @classmethod
    def _not_latest(cls, value: str) -> str:
        if value == "latest":
            raise ValueError("'latest' is mutable; pin a version tag")
        return value


class AutoscalingConfig(_Model):
    keda: bool
    min_replicas: PositiveInt
    max_replicas: PositiveInt
    target_cpu_utilization: Percent = 70
    target_memory_utilization: Percent = 80
    queue_depth_per_replica: PositiveInt = 20

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas {self.min_replicas} is greater than maxReplicas {self.max_replicas}"
            )
        return self


class CanaryConfig(_Model):
    version: Annotated[str, Field(min_length=1, max_length=63)]
    image_tag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")]
    weight: Annotated[int, Field(ge=0, le=100, strict=True)]


class LlmConfig(_Model):
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


class BudgetConfig(_Model):
    monthly_usd: PositiveUsd
    per_tenant_monthly_usd: PositiveUsd


class OperatorRelease(_Model):
    enabled: bool = False
    chart_version: str


class OperatorsConfig(_Model):
    keda: OperatorRelease = OperatorRelease(chart_version="2.16.0")
    ingress_nginx: OperatorRelease = OperatorRelease(chart_version="4.11.3")
    external_secrets: OperatorRelease = OperatorRelease(chart_version="0.10.5")


class IngressConfig(_Model):
    enabled: bool = False
    host: str = "agents.example.internal"
    class_name: str = "nginx"


class MonitoringConfig(_Model):
    prometheus_image: str = "prom/prometheus:v2.55.1"
    retention: Annotated[str, Field(pattern=r"^\d+[hdwy]$")] = "15d"
    storage_gi: PositiveInt = 20
    scrape_interval: Annotated[str, Field(pattern=r"^\d+[smh]$")] = "30s"
    resources: Resources = Resources(
        cpu_request="250m", cpu_limit="1", memory_request="512Mi", memory_limit="2Gi"
    )


class Secrets(_Model):
    """Values that must arrive as Pulumi secrets (`pulumi config set --secret`)."""

    redis_password: SecretStr
    app_api_keys: SecretStr
    model_api_key: SecretStr | None = None

    @field_validator("redis_password")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("app_api_keys")
    @classmethod
    def _tenant_key_map(cls, value: SecretStr) -> SecretStr:
        try:
            keys = json.loads(value.get_secret_value())
        except json.JSONDecodeError:
            raise ValueError('must be a JSON object {"<tenant>": "<api key>"}') from None
        if not isinstance(keys, dict) or not keys:
            raise ValueError('must be a non-empty JSON object {"<tenant>": "<api key>"}')
        if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in keys.items()):
            raise ValueError("every tenant needs a non-empty string API key")
        return value

    def tenant_api_keys(self) -> dict[str, str]:
        keys: dict[str, str] = json.loads(self.app_api_keys.get_secret_value())
        return keys


class StackConfig(_Model):
    environment: Environment
    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = "agents"
    local: LocalKubernetesConfig | None = None
    cluster: ClusterConfig | None = None
    gpu_pools: list[GpuPoolConfig] = Field(default_factory=list)
    redis: RedisConfig
    agent: AgentConfig
    autoscaling: AutoscalingConfig
    canary: CanaryConfig | None = None
    llm: LlmConfig
    budget: BudgetConfig
    operators: OperatorsConfig = OperatorsConfig()
    ingress: IngressConfig = IngressConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    secrets: Secrets

    @property
    def on_aws(self) -> bool:
        return self.environment is not Environment.LOCAL

    def consistency_problems(self) -> list[tuple[str, str]]:
        """Rules across sections, as (config key, what is wrong)."""
        problems: list[tuple[str, str]] = []
        env = self.environment
        if self.on_aws and self.cluster is None:
            problems.append(("cluster", f"required for the {env} environment"))
        if not self.on_aws and self.cluster is not None:
            problems.append(("cluster", "only for AWS environments (dev, prod); remove it"))
        if not self.on_aws and self.gpu_pools:
            problems.append(
                ("gpuPools", "GPU pools need an EKS cluster; the local stack is CPU-only")
            )
        if self.redis.mode == "elasticache" and not self.on_aws:
            problems.append(("redis.mode", "'elasticache' needs an AWS environment"))
        if self.llm.mode == "vllm" and not self.gpu_pools:
            problems.append(("llm.mode", "'vllm' needs at least one entry in gpuPools"))
        if self.llm.mode == "external" and self.secrets.model_api_key is None:
            problems.append(("modelApiKey", "required when llm.mode is 'external'"))
        if self.autoscaling.keda and not self.operators.keda.enabled:
            problems.append(("autoscaling.keda", "needs operators.keda.enabled: true"))
        if self.ingress.enabled and not self.operators.ingress_nginx.enabled:
            problems.append(("ingress.enabled", "needs operators.ingressNginx.enabled: true"))
        if env is Environment.PROD:
            if not self.operators.external_secrets.enabled:
                problems.append(
                    (
                        "operators.externalSecrets.enabled",
                        "prod keeps secrets in AWS Secrets Manager: set true",
                    )
                )
            if self.cluster is not None and not self.cluster.private_endpoint:
                problems.append(
                    ("cluster.privateEndpoint", "prod needs a private API endpoint: set true")
                )
            if self.redis.mode == "elasticache" and self.redis.num_cache_clusters < 2:
                problems.append(
                    ("redis.numCacheClusters", "prod ElastiCache needs >= 2 for Multi-AZ")
                )
        if self.canary is not None and self.canary.version == self.agent.version:
            problems.append(
                ("canary.version", "equals agent.version; to promote, remove the canary")
            )
        return problems


def _decode(value: Any) -> Any:
    """Pulumi hands structured config to the program as JSON text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _key_of(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return f"{NAMESPACE}:{path}" if path else NAMESPACE


def load_stack_config(raw: Mapping[str, Any], secret_keys: set[str]) -> StackConfig:
    """Build the StackConfig from a stack's raw `agent-platform:*` config.

    `raw` maps full config keys (`agent-platform:redis`) to their values as Pulumi
    passes them; `secret_keys` names the keys that were set with `--secret`.
    """
    prefix = f"{NAMESPACE}:"
    values: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name == "secrets":
            # The model's own field for the secret keys, never a config key itself.
            problems.append(f"{key}: unknown key (check its spelling)")
        elif name in SECRET_KEYS:
            if key not in secret_keys:
                problems.append(
                    f"{key}: must be a secret, not plaintext; "
                    f"run `pulumi config set --secret {name} <value>`"
                )
            secrets[name] = value
        else:
            values[name] = _decode(value)
    values["secrets"] = secrets
    try:
        config = StackConfig.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            if loc[:1] == ("secrets",):
                loc = loc[1:]
            problems.append(f"{_key_of(loc)}: {_describe(error)}")
        raise ConfigError(problems) from None
    problems += [f"{NAMESPACE}:{key}: {message}" for key, message in config.consistency_problems()]
    if problems:
        raise ConfigError(problems)
    return config


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key (check its spelling)"
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = error.get("input")
    # Echo a bad scalar so the fix is obvious, never a secret's value.
    is_secret = any(key in error["loc"] for key in SECRET_KEYS)
    if shown is None or isinstance(shown, dict | list) or is_secret:
        return message
    return f"{message} (got {shown!r})"


def from_pulumi() -> StackConfig:
    """Read the running stack's config through the Pulumi runtime."""
    from pulumi.runtime.config import get_config_env, get_config_secret_keys_env

    return load_stack_config(get_config_env(), set(get_config_secret_keys_env()))
