"""Service configuration, read once from `AGENT_*` environment variables."""

from __future__ import annotations

import difflib
import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as SourceError

from agent_app.keys import DEAD_LETTER_STREAM, TASK_STREAM

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ModelSpec(BaseModel):
    """One entry of the price table: what a model costs and how good it is expected to be."""

    name: str = Field(min_length=1)
    input_usd_per_1k: float = Field(ge=0)
    output_usd_per_1k: float = Field(ge=0)
    quality: float = Field(ge=0, le=1)


DEFAULT_MODELS = [
    ModelSpec(name="small", input_usd_per_1k=0.0002, output_usd_per_1k=0.0006, quality=0.6),
    ModelSpec(name="medium", input_usd_per_1k=0.001, output_usd_per_1k=0.003, quality=0.8),
    ModelSpec(name="large", input_usd_per_1k=0.005, output_usd_per_1k=0.015, quality=0.95),
]


# A directory holding one file per secret setting, named like its variable
# (AGENT_REDIS_PASSWORD): how a pod gets its Secret (a read-only volume), so no secret is
# in the process environment, where a crash dump, `/proc/<pid>/environ` or a child
# process would show it. Files win over variables; variables remain for local runs.
SECRETS_DIR_VARIABLE = "AGENT_SECRETS_DIR"


class _SecretFiles(SecretsSettingsSource):
    """pydantic-settings' secrets-directory source, except that a file present for a
    setting but unreadable (no permission, a dangling link, a directory) is an error
    naming the setting instead of a warning and a silent default."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[object, str, bool]:
        variable = f"AGENT_{field_name.upper()}"
        problem = None
        for directory in self.secrets_paths:
            path = self.find_case_path(directory, variable, self.case_sensitive)
            if path is not None and not path.is_file():
                problem = f"{path.name} is not a readable file (a link to nothing?)"
        if problem is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    return super().get_field_value(field, field_name)
            except (OSError, UnicodeDecodeError, UserWarning) as exc:
                problem = str(exc)
        raise SettingsError(
            f"invalid configuration:\n  {variable}: cannot read its file in "
            f"{SECRETS_DIR_VARIABLE} ({self.secrets_dir}): {problem}"
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AGENT_", extra="ignore", frozen=True, populate_by_name=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(file_secret_settings, SecretsSettingsSource)
        files = _SecretFiles(settings_cls, secrets_dir=file_secret_settings.secrets_dir)
        return init_settings, files, env_settings, dotenv_settings

    host: str = "0.0.0.0"  # noqa: S104 - a container must listen on all interfaces
    port: int = Field(default=8080, ge=1, le=65535)
    worker_port: int = Field(default=8081, ge=1, le=65535)
    # The API's metrics (tenant names and budget ratios among them) and the queue backlog
    # are served on this port only, which no Service exposes: Prometheus alone reads it.
    metrics_port: int = Field(default=9464, ge=1, le=65535)
    # A client that opens a connection and sends its request head or its body slowly, or
    # announces a longer Content-Length than it sends, is cut off after these.
    header_read_timeout_s: float = Field(default=5.0, gt=0)
    body_read_timeout_s: float = Field(default=10.0, gt=0)

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: SecretStr | None = None

    llm_base_url: str = "http://127.0.0.1:8000/v1"
    llm_api_key: SecretStr = SecretStr("unused")
    # The one model a deployment serves (e.g. vLLM's); without AGENT_MODELS the price table
    # becomes this model alone, priced by the two settings below.
    llm_model: str | None = None
    llm_input_usd_per_1k: float = Field(default=0.001, ge=0)
    llm_output_usd_per_1k: float = Field(default=0.003, ge=0)
    llm_timeout_s: float = Field(default=30.0, gt=0)
    # How long an idle connection to the LLM endpoint is kept for reuse. Below the
    # server's own keep-alive (uvicorn's, and so vLLM's, is 5 s): at the same value, a
    # call after a lull of about that long goes out on a connection the server is closing
    # and fails, and a burst of such failures opens the model's circuit.
    llm_keepalive_s: float = Field(default=2.0, gt=0)
    llm_max_concurrency: int = Field(default=8, ge=1)
    llm_retry_attempts: int = Field(default=3, ge=1)
    llm_retry_wait_initial_s: float = Field(default=0.2, ge=0)
    llm_retry_wait_max_s: float = Field(default=5.0, ge=0)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_s: float = Field(default=30.0, gt=0)

    # `tenant=sha256hex,...` or a JSON object tenant -> sha256hex; only hashes are stored,
    # so the Secret never holds usable keys.
    api_keys_sha256: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)

    environment: str = "dev"
    release_version: str = "dev"
    release_track: Literal["stable", "canary"] = "stable"
    experiment_name: str = "prompt_style"
    # JSON object variant -> weight; tenants are assigned by rendezvous hashing.
    experiment_variants: dict[str, float] = Field(
        default_factory=lambda: {"control": 1.0, "concise": 1.0}
    )

    task_stream: str = TASK_STREAM
    dead_letter_stream: str = DEAD_LETTER_STREAM
    consumer_group: str = "agent-workers"
    consumer_name: str | None = None
    worker_concurrency: int = Field(default=4, ge=1)
    max_attempts: int = Field(default=3, ge=1)
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    claim_idle_ms: int = Field(default=60_000, ge=100)
    task_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    max_wait_s: float = Field(default=30.0, ge=0)
    # Bounded admission (`admission`): a task is refused at once (503; 429 for a tenant
    # over its fair share) when the tasks queued and running would take longer than this
    # to finish at the rate tasks finish, and there are at least `admission_min_tasks` of
    # them (an idle service has no rate to go by).
    admission_max_latency_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    admission_min_tasks: int = Field(default=100, ge=1)

    otlp_endpoint: str | None = None

    models: list[ModelSpec] = Field(default_factory=lambda: list(DEFAULT_MODELS), min_length=1)
    default_quality: float = Field(default=0.75, ge=0, le=1)
    expected_completion_tokens: int = Field(default=300, ge=1)
    monthly_budget_usd: float = Field(
        default=100.0,
        gt=0,
        validation_alias=AliasChoices(
            "AGENT_MONTHLY_BUDGET_USD", "AGENT_TENANT_MONTHLY_BUDGET_USD", "monthly_budget_usd"
        ),
    )
    # JSON object tenant -> monthly USD; tenants not listed get monthly_budget_usd.
    tenant_budgets_usd: dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )
    budget_limit_ratio: float = Field(default=0.8, gt=0, lt=1)
    limited_quality_relief: float = Field(default=0.2, ge=0, le=1)
    limited_tenant_concurrency: int = Field(default=1, ge=1)
    limited_cache_ttl_factor: float = Field(default=4.0, ge=1)

    cache_ttl_s: int = Field(default=3600, ge=1)
    memory_ttl_s: int = Field(default=3600, ge=1)
    max_steps: int = Field(default=6, ge=1, le=50)
    # The longest LLM message content kept (plan or answer); longer ones are cut, marked.
    max_answer_chars: int = Field(default=20_000, ge=100)
    max_task_chars: int = Field(default=8000, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    injection_flag_score: float = Field(default=0.4, gt=0)
    injection_reject_score: float = Field(default=0.8, gt=0)
    # The built-in rules, or the rules with LLM Guard's prompt-injection classifier (needs
    # the llm-guard package and its model; see `injection.detector`).
    injection_detector: Literal["rules", "llm_guard"] = "rules"
    # The classifier's model for llm_guard: a local directory or a model hub name; unset,
    # LLM Guard's default.
    injection_model: str | None = None
    # Comma-separated URL prefixes the fetch tool may read.
    fetch_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)
    fetch_max_bytes: int = Field(default=64 * 1024, ge=1)

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="before")
    @classmethod
    def _single_model_price_table(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("llm_model") and "models" not in data:
            data = {
                **data,
                "models": [
                    {
                        "name": data["llm_model"],
                        "input_usd_per_1k": data.get("llm_input_usd_per_1k", 0.001),
                        "output_usd_per_1k": data.get("llm_output_usd_per_1k", 0.003),
                        "quality": 1.0,
                    }
                ],
            }
        return data

    @field_validator("api_keys_sha256", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        parsed: dict[str, str] = {}
        if value.lstrip().startswith("{"):
            try:
                by_tenant = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc.msg}") from None
            if not isinstance(by_tenant, dict) or not all(
                isinstance(v, str) for v in by_tenant.values()
            ):
                raise ValueError("JSON form must be an object of tenant -> sha256 hex")
            return {digest.strip().lower(): tenant for tenant, digest in by_tenant.items()}
        for raw in value.split(","):
            item = raw.strip()
            if not item:
                continue
            tenant, sep, digest = item.partition("=")
            if not sep:
                raise ValueError(f"entry {item[:20]!r}... must be tenant=sha256hex")
            parsed[digest.strip().lower()] = tenant.strip()
        return parsed

    @field_validator("api_keys_sha256")
    @classmethod
    def _check_api_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for digest, tenant in value.items():
            if not _SHA256_HEX.match(digest):
                raise ValueError(f"key hash for tenant {tenant!r} is not 64 hex characters")
            if not _TENANT.match(tenant):
                raise ValueError(f"tenant name {tenant!r} must match {_TENANT.pattern}")
        return value

    @field_validator("fetch_allowlist", mode="before")
    @classmethod
    def _parse_allowlist(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("fetch_allowlist")
    @classmethod
    def _check_allowlist(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not prefix.startswith(("http://", "https://")) or prefix.count("/") < 3:
                raise ValueError(f"{prefix!r} must be an http(s) URL prefix ending in a path")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        if "@" in value:
            raise ValueError("must not carry credentials; set AGENT_REDIS_PASSWORD instead")
        return value

    @field_validator("llm_base_url")
    @classmethod
    def _check_llm_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("tenant_budgets_usd")
    @classmethod
    def _check_budget_tenants(cls, value: dict[str, float]) -> dict[str, float]:
        for tenant in value:
            if not _TENANT.match(tenant):
                raise ValueError(f"tenant name {tenant!r} must match {_TENANT.pattern}")
        return value

    @field_validator("experiment_variants")
    @classmethod
    def _check_variants(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or any(w <= 0 for w in value.values()):
            raise ValueError("needs at least one variant, each with a positive weight")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("models: model names must be unique")
        if self.injection_flag_score > self.injection_reject_score:
            raise ValueError("injection_flag_score must not exceed injection_reject_score")
        if self.metrics_port == self.port:
            raise ValueError(
                "AGENT_METRICS_PORT must differ from AGENT_PORT: metrics are not public"
            )
        if self.llm_model is not None and self.llm_model not in names:
            raise ValueError(f"llm_model {self.llm_model!r} is not in models ({', '.join(names)})")
        if self.shutdown_grace_s * 1000 >= self.claim_idle_ms:
            # A draining worker refreshes its entries' claims as it starts draining and
            # then every third of the claim idle time; a drain shorter than the claim idle
            # time ends before another worker could take a running entry even if every
            # later refresh failed. README: "Shutdown and claims".
            raise ValueError(
                f"AGENT_SHUTDOWN_GRACE_S ({self.shutdown_grace_s:g} s) must be shorter than "
                f"AGENT_CLAIM_IDLE_MS ({self.claim_idle_ms} ms), or another worker may take "
                "and run again the tasks a stopping worker is still finishing"
            )
        return self

    def budget_for(self, tenant: str) -> float:
        return self.tenant_budgets_usd.get(tenant, self.monthly_budget_usd)

    def model(self, name: str) -> ModelSpec:
        return next(m for m in self.models if m.name == name)


class SettingsError(Exception):
    """Settings could not be loaded; the message names every bad variable."""


def _env_names() -> dict[str, str]:
    """Field or alias -> the environment variable(s) to name in an error message."""
    names: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        env = f"AGENT_{name.upper()}"
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            choices = [str(c) for c in alias.choices if str(c).startswith("AGENT_")]
            env = " or ".join(choices)
            names.update(dict.fromkeys(choices, env))
        names[name] = env
    return names


# AGENT_* variables that are not settings of `serve` and `worker`: devllm's own, the
# project's tooling's.
_OTHER_PREFIXES = ("AGENT_DEVLLM_", "AGENT_PLATFORM_")
# What Kubernetes puts in every pod for each Service of its namespace (service links):
# a Service named `agent-api` gives AGENT_API_SERVICE_HOST, AGENT_API_PORT=tcp://…, …
_SERVICE_LINK = re.compile(r"_SERVICE_HOST$|_SERVICE_PORT(_[A-Z0-9_]+)?$|_PORT_\d+_(TCP|UDP|SCTP)")
_SERVICE_LINK_URL = re.compile(r"^(tcp|udp|sctp)://")


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Problem lines for AGENT_* variables no setting reads (a misspelt name would
    otherwise leave its setting at the default without a word), with the likely meant one."""
    known = {env for names in _env_names().values() for env in names.split(" or ")}
    known.add(SECRETS_DIR_VARIABLE)
    problems = []
    for name in sorted(environ):
        if not name.startswith("AGENT_") or name in known or name.startswith(_OTHER_PREFIXES):
            continue
        if _SERVICE_LINK.search(name) or (
            name.endswith("_PORT") and _SERVICE_LINK_URL.match(environ[name])
        ):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        problems.append(f"  {name}: not a setting{hint}")
    return problems


def _secrets_dir(environ: Mapping[str, str]) -> Path | None:
    if not environ.get(SECRETS_DIR_VARIABLE):
        return None
    path = Path(environ[SECRETS_DIR_VARIABLE])
    if not path.is_dir():
        raise SettingsError(
            f"invalid configuration:\n  {SECRETS_DIR_VARIABLE}: {path} is not a directory"
        )
    return path


def load_settings() -> Settings:
    unknown = unknown_variables(os.environ)
    secrets_dir = _secrets_dir(os.environ)
    try:
        settings = Settings(_secrets_dir=secrets_dir)
    except SourceError as exc:
        # pydantic-settings wraps what a source raises; a secret file's message is ours.
        if isinstance(exc.__cause__, SettingsError):
            raise exc.__cause__ from None
        raise
    except ValidationError as exc:
        env_names = _env_names()
        lines = [*unknown]
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            message = err["msg"].removeprefix("Value error, ")
            if not loc:
                # A rule across settings: its message names the variables it relates.
                lines.append(f"  {message}")
                continue
            env = env_names.get(loc[0], f"AGENT_{loc[0].upper()}")
            where = f" ({'.'.join(loc)})" if len(loc) > 1 else ""
            lines.append(f"  {env}{where}: {message}")
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None
    if unknown:
        raise SettingsError("invalid configuration:\n" + "\n".join(unknown))
    return settings
