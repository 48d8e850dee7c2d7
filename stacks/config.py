"""The typed stack configuration.

Every `agent-platform:*` key of the stack's Pulumi config is read once, here, into one
pydantic model. It composes the components' own models, so each section is checked by
the component it configures; this module adds the sections no component owns and the
rules that span sections. A bad stack file fails before any resource is registered,
with one error that lists every problem under its config key, so nobody fixes them one
`pulumi preview` at a time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
)

from components.agent_service import Version
from components.app_image import ImageTag
from components.autoscaling import AutoscalingConfig
from components.canary import CanaryConfig
from components.eks_cluster import KubernetesVersion, Region
from components.gateway import GatewayConfig
from components.gpu_node_pool import GpuPoolConfig
from components.karpenter import KarpenterConfig
from components.llm_service import LlmConfig
from components.local_cluster import LocalClusterArgs
from components.monitoring import MonitoringConfig
from components.namespace import NamespaceName
from components.network import VpcCidr, ZoneCount
from components.operators import OperatorsConfig
from components.progressive_delivery import ProgressiveDeliveryConfig
from components.redis import RedisConfig
from components.values import ArgsModel, Cidr, Resources, Scaling

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


PositiveUsd = Annotated[float, Field(gt=0, strict=True)]


class SystemPoolConfig(ArgsModel):
    instance_type: str = "m6i.large"
    scaling: Scaling = Scaling(min_size=2, desired_size=2, max_size=4)


# --- AWS hardening (issue 17 point 5): endpoint CIDRs, log retention, cluster admins ---
# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = frozenset(
    {
        *(1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731),
        *(1096, 1827, 2192, 2557, 2922, 3288, 3653),
    }
)
# An IAM role or user (access entries take no other principal).
IamPrincipalArn = Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/\S+$")]


def _a_cloudwatch_retention(value: int) -> int:
    if value not in LOG_RETENTION_DAYS:
        raise ValueError(f"CloudWatch Logs keeps logs for one of {sorted(LOG_RETENTION_DAYS)} days")
    return value


LogRetentionDays = Annotated[int, Field(strict=True), AfterValidator(_a_cloudwatch_retention)]


class ClusterConfig(ArgsModel):
    """The AWS network and EKS cluster (dev and prod)."""

    region: Region
    availability_zones: ZoneCount
    vpc_cidr: VpcCidr
    kubernetes_version: KubernetesVersion = "1.31"
    private_endpoint: bool = False
    # Who may reach a public API endpoint: no default, never the whole internet unless
    # a stack writes it down (and the policy pack refuses that too).
    public_access_cidrs: list[Cidr] = Field(default_factory=list)
    # How long the stack's log groups (control plane, VPC flow logs) keep their logs.
    log_retention_days: LogRetentionDays
    # Cluster admins through EKS access entries, besides the principal that deploys.
    admin_principal_arns: list[IamPrincipalArn] = Field(default_factory=list)
    system_pool: SystemPoolConfig = SystemPoolConfig()


# --- end AWS hardening ---


class AgentConfig(ArgsModel):
    image_repository: str = "agent-platform/agent-app"
    image_tag: ImageTag
    version: Version
    api: Resources = Resources(
        cpu_request="250m", cpu_limit="1", memory_request="256Mi", memory_limit="512Mi"
    )
    worker: Resources = Resources(
        cpu_request="250m", cpu_limit="1", memory_request="256Mi", memory_limit="512Mi"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # URL prefixes the fetch tool may read: the app's allowlist and the workers' egress
    # (to public addresses, on these URLs' ports) come from this one value.
    fetch_allowlist: list[HttpUrl] = Field(default_factory=list)

    def fetch_ports(self) -> list[int]:
        return sorted(
            {url.port or (443 if url.scheme == "https" else 80) for url in self.fetch_allowlist}
        )


class BudgetConfig(ArgsModel):
    monthly_usd: PositiveUsd
    per_tenant_monthly_usd: PositiveUsd


class Secrets(ArgsModel):
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


class StackConfig(ArgsModel):
    environment: Environment
    namespace: NamespaceName = "agents"
    local: LocalClusterArgs | None = None
    cluster: ClusterConfig | None = None
    gpu_pools: list[GpuPoolConfig] = Field(default_factory=list)
    # Karpenter (issue 16 point 4): GPU pools as NodePools instead of managed node groups.
    karpenter: KarpenterConfig = KarpenterConfig()
    redis: RedisConfig
    agent: AgentConfig
    autoscaling: AutoscalingConfig
    canary: CanaryConfig | None = None
    # Flagger's metric-gated releases (components/progressive_delivery.py).
    progressive_delivery: ProgressiveDeliveryConfig = ProgressiveDeliveryConfig()
    llm: LlmConfig
    budget: BudgetConfig
    operators: OperatorsConfig = OperatorsConfig()
    gateway: GatewayConfig = GatewayConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    secrets: Secrets

    @property
    def on_aws(self) -> bool:
        return self.environment is not Environment.LOCAL

    def _aws_only(self) -> list[tuple[str, str]]:
        """What a local stack asks for that only an AWS environment has."""
        problems = []
        if self.karpenter.enabled:
            problems.append(("karpenter.enabled", "Karpenter launches EC2 nodes: dev or prod only"))
        if self.redis.mode == "elasticache":
            problems.append(("redis.mode", "'elasticache' needs an AWS environment"))
        tls = self.gateway.tls
        if tls and tls.issuer and tls.issuer.acme:
            problems.append(
                (
                    "gateway.tls.issuer.acme",
                    "DNS-01 in Route53 needs an AWS environment: use issuer.ca locally",
                )
            )
        return problems

    def consistency_problems(self) -> list[tuple[str, str]]:
        """Rules across sections, as (config key, what is wrong)."""
        problems: list[tuple[str, str]] = []
        env = self.environment
        if self.on_aws and self.cluster is None:
            problems.append(("cluster", f"required for the {env} environment"))
        if not self.on_aws and self.cluster is not None:
            problems.append(("cluster", "only for AWS environments (dev, prod); remove it"))
        # (prod refuses a public endpoint at all: one problem there, below.)
        cluster = self.cluster
        if (
            cluster is not None
            and not cluster.private_endpoint
            and not cluster.public_access_cidrs
            and env is not Environment.PROD
        ):
            problems.append(
                (
                    "cluster.publicAccessCidrs",
                    "a public API endpoint needs the CIDRs that may reach it (there is no "
                    "default); list them, or set cluster.privateEndpoint: true",
                )
            )
        if not self.on_aws and self.gpu_pools and not (self.local and self.local.simulated):
            problems.append(
                (
                    "gpuPools",
                    "a local stack simulates GPU pools only on the project's own control "
                    "plane: set local.target to cluster and declare local.nodes",
                )
            )
        if not self.on_aws:
            problems += self._aws_only()
        if self.llm.mode == "vllm" and not self.gpu_pools:
            problems.append(("llm.mode", "'vllm' needs at least one entry in gpuPools"))
        problems += self._llm_scaling_problems()
        if self.llm.mode in ("external", "vllm") and self.secrets.model_api_key is None:
            problems.append(
                ("modelApiKey", f"required when llm.mode is '{self.llm.mode}' (the model's key)")
            )
        if self.autoscaling.keda and not self.operators.keda.enabled:
            problems.append(("autoscaling.keda", "needs operators.keda.enabled: true"))
        if self.gateway.enabled and not self.operators.envoy_gateway.enabled:
            problems.append(("gateway.enabled", "needs operators.envoyGateway.enabled: true"))
        problems += self._progressive_delivery_problems()
        tls = self.gateway.tls
        if self.gateway.enabled and tls and tls.issuer and not self.operators.cert_manager.enabled:
            problems.append(("gateway.tls.issuer", "needs operators.certManager.enabled: true"))
        if env is Environment.PROD:
            problems += self._prod_problems()
        if self.canary is not None and self.canary.version == self.agent.version:
            problems.append(
                ("canary.version", "equals agent.version; to promote, remove the canary")
            )
        return problems

    def _progressive_delivery_problems(self) -> list[tuple[str, str]]:
        if not self.progressive_delivery.enabled:
            return []
        problems: list[tuple[str, str]] = []
        if self.canary is not None:
            problems.append(
                (
                    "canary",
                    "progressiveDelivery.enabled releases through Flagger, which makes the "
                    "canary itself: remove this section and change agent.version and "
                    "agent.imageTag to release",
                )
            )
        if not self.gateway.enabled:
            problems.append(
                (
                    "progressiveDelivery.enabled",
                    "Flagger steps the Gateway's weights: needs gateway.enabled: true",
                )
            )
        if not self.operators.flagger.enabled:
            problems.append(
                ("progressiveDelivery.enabled", "needs operators.flagger.enabled: true")
            )
        return problems

    def _llm_scaling_problems(self) -> list[tuple[str, str]]:
        """vLLM's replicas must fit the GPU pools, and an autoscaled vLLM needs KEDA."""
        problems: list[tuple[str, str]] = []
        llm = self.llm
        if llm.mode != "vllm":
            return problems
        gpus = sum(pool.max_gpus for pool in self.gpu_pools)
        needed = llm.max_replicas * llm.gpus_per_replica
        key = "llm.autoscaling.maxReplicas" if llm.autoscaling else "llm.replicas"
        if self.gpu_pools and needed > gpus:
            problems.append(
                (
                    key,
                    f"{llm.max_replicas} replicas of {llm.gpus_per_replica} GPU(s) need "
                    f"{needed} GPUs; the GPU pools hold at most {gpus}",
                )
            )
        if llm.autoscaling is None:
            return problems
        if not self.operators.keda.enabled:
            problems.append(("llm.autoscaling", "needs operators.keda.enabled: true"))
        if self.environment is Environment.PROD and llm.autoscaling.min_replicas < 1:
            problems.append(
                ("llm.autoscaling.minReplicas", "prod keeps at least one vLLM replica: set >= 1")
            )
        return problems

    def _prod_problems(self) -> list[tuple[str, str]]:
        """What prod needs beyond any environment."""
        problems: list[tuple[str, str]] = []
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
        if self.gateway.enabled and self.gateway.tls is None:
            problems.append(
                (
                    "gateway.tls",
                    "prod serves the agent API over HTTPS only (tenant API keys cross the "
                    "VPC): set gateway.tls.issuer (cert-manager issues the certificate) or "
                    "gateway.tls.secretName (a kubernetes.io/tls Secret you provide)",
                )
            )
        if self.autoscaling.workers.min_replicas < 1:
            problems.append(
                (
                    "autoscaling.workerMinReplicas",
                    "prod keeps at least one worker warm (no cold start on the first "
                    "task): set >= 1",
                )
            )
        if self.redis.mode == "elasticache" and self.redis.num_cache_clusters < 2:
            problems.append(("redis.numCacheClusters", "prod ElastiCache needs >= 2 for Multi-AZ"))
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
