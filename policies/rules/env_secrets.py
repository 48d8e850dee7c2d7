"""Secrets reach containers through secretKeyRef, never as literals in the pod spec; and
as files (a Secret volume) rather than environment variables, except for the containers
whose third-party image reads its secret from nothing else."""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any

from pydantic import Field

from costing.view import UNKNOWN, ResourceView, dig
from policies.rule import Pattern, ResourceRule, Rule, RuleConfig
from policies.violation import Violation, undetermined, violation
from policies.workloads import containers, containers_unknown, is_pod_bearing

ENV_LITERALS = "no-secret-literals-in-env"
SECRETS_AS_FILES = "secrets-as-files"


class EnvSecretsConfig(RuleConfig):
    # Name segments (split on _) that mark a variable as holding a secret.
    secret_name_segments: tuple[str, ...] = (
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "APIKEY",
        "CREDENTIALS",
        "PRIVATE",
    )
    # Adjacent segment pairs that do the same (API_KEY, ACCESS_KEY, ...).
    secret_name_pairs: tuple[str, ...] = ("API_KEY", "ACCESS_KEY", "SECRET_KEY", "AUTH_KEY")
    # A variable naming where a secret lives is not the secret itself.
    non_secret_suffixes: tuple[str, ...] = ("_FILE", "_PATH", "_DIR")
    allowed_names: tuple[str, ...] = ()
    secret_value_patterns: tuple[Pattern, ...] = (
        r"^sk-[A-Za-z0-9_-]{16,}",
        r"^AKIA[0-9A-Z]{16}$",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"^gh[pousr]_[A-Za-z0-9]{30,}",
        r"^xox[abposr]-",
        r"://[^/\s:@]+:[^/\s@]+@",
    )


def secret_looking_name(name: str, cfg: EnvSecretsConfig) -> bool:
    upper = name.upper()
    if upper in cfg.allowed_names or any(upper.endswith(s) for s in cfg.non_secret_suffixes):
        return False
    segments = upper.split("_")
    pairs = {f"{a}_{b}" for a, b in itertools.pairwise(segments)}
    return bool(set(segments) & set(cfg.secret_name_segments) or pairs & set(cfg.secret_name_pairs))


CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
# ConfigMap keys shaped like environment variables are there to be loaded with envFrom.
_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def check_env_secrets(resource: ResourceView, cfg: EnvSecretsConfig) -> list[Violation]:
    if resource.type == CONFIG_MAP:
        return _check_config_map(resource, cfg)
    if not is_pod_bearing(resource):
        return []
    if containers_unknown(resource):
        return [undetermined(ENV_LITERALS, resource, "containers unknown at preview.")]
    found: list[Violation] = []
    for container in containers(resource):
        env: Any = dig(container.spec, "env")
        if env is UNKNOWN:
            found.append(undetermined(ENV_LITERALS, resource, f"{container.label}: env unknown."))
            continue
        for index, var in enumerate(env if isinstance(env, list) else []):
            name = dig(var, "name")
            path = f"{container.path}.env[{index}]"
            if not isinstance(name, str):
                continue
            found.extend(_check_var(resource, container.label, path, name, var, cfg))
    return found


def _check_config_map(resource: ResourceView, cfg: EnvSecretsConfig) -> list[Violation]:
    data = resource.get("data")
    if data is UNKNOWN:
        return [undetermined(ENV_LITERALS, resource, "data unknown at preview.")]
    found: list[Violation] = []
    fix = "move it to a Secret and read it with secretKeyRef (or secretRef in envFrom)."
    for key, value in sorted(data.items() if isinstance(data, dict) else []):
        if _ENV_KEY.match(key) and secret_looking_name(key, cfg):
            found.append(
                violation(ENV_LITERALS, resource, f"data.{key} is a secret-looking name; {fix}")
            )
        elif isinstance(value, str) and _credential_shaped(value, cfg):
            found.append(
                violation(
                    ENV_LITERALS, resource, f"data.{key} holds a credential-shaped value; {fix}"
                )
            )
    return found


def _credential_shaped(value: str, cfg: EnvSecretsConfig) -> bool:
    return any(re.search(p, value) for p in cfg.secret_value_patterns)


def _check_var(
    resource: ResourceView, label: str, path: str, name: str, var: Any, cfg: EnvSecretsConfig
) -> list[Violation]:
    value = dig(var, "value")
    secret_name = secret_looking_name(name, cfg)
    fix = (
        f"move it to a Kubernetes Secret and use {path}.valueFrom.secretKeyRef "
        "(or allow the name in allowed_names if it is not a secret)."
    )
    if value is not None and secret_name:
        # The name alone decides: a literal is in the pod spec whatever its value is.
        return [
            violation(
                ENV_LITERALS,
                resource,
                f"{label}: {path} '{name}' is a literal value for a secret-looking name; {fix}",
            )
        ]
    if value is UNKNOWN:
        return [undetermined(ENV_LITERALS, resource, f"{label}: {path}.value unknown.")]
    if isinstance(value, str) and _credential_shaped(value, cfg):
        return [
            violation(
                ENV_LITERALS,
                resource,
                f"{label}: {path} '{name}' holds a value that looks like a credential; {fix}",
            )
        ]
    source = dig(var, "valueFrom")
    if secret_name and isinstance(source, dict) and "secretKeyRef" not in source:
        return [
            violation(
                ENV_LITERALS,
                resource,
                f"{label}: {path} '{name}' takes a "
                f"secret-looking value from {sorted(source)[0]}; {fix}",
            )
        ]
    return []


class SecretsAsFilesConfig(RuleConfig):
    # Container name -> why its image needs a secret in the environment: the only
    # containers allowed secretKeyRef env or a secretRef envFrom.
    env_allowed: dict[str, Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: {
            "redis": "redis-cli (the probe) reads its password from REDISCLI_AUTH or argv only",
            "vllm": "vLLM takes its API key from VLLM_API_KEY or --api-key (argv) only",
            "fetch-weights": "the weight download's huggingface_hub reads HF_TOKEN",
        }
    )


def check_secrets_as_files(resource: ResourceView, cfg: SecretsAsFilesConfig) -> list[Violation]:
    if not is_pod_bearing(resource):
        return []
    if containers_unknown(resource):
        return [undetermined(SECRETS_AS_FILES, resource, "containers unknown at preview.")]
    found: list[Violation] = []
    fix = (
        "mount the Secret as a read-only volume and read the file (or, for a third-party "
        "image that reads only its environment, add the container to env_allowed with why)."
    )
    for container in containers(resource):
        if container.name in cfg.env_allowed:
            continue
        env: Any = dig(container.spec, "env")
        if env is UNKNOWN:
            found.append(
                undetermined(SECRETS_AS_FILES, resource, f"{container.label}: env unknown.")
            )
            continue
        for index, var in enumerate(env if isinstance(env, list) else []):
            if dig(var, "valueFrom", "secretKeyRef") not in (None, UNKNOWN):
                found.append(
                    violation(
                        SECRETS_AS_FILES,
                        resource,
                        f"{container.label}: {container.path}.env[{index}] "
                        f"'{dig(var, 'name')}' is a secret in the environment; {fix}",
                    )
                )
        sources: Any = dig(container.spec, "envFrom")
        for index, source in enumerate(sources if isinstance(sources, list) else []):
            if dig(source, "secretRef") not in (None, UNKNOWN):
                found.append(
                    violation(
                        SECRETS_AS_FILES,
                        resource,
                        f"{container.label}: {container.path}.envFrom[{index}] loads a "
                        f"Secret into the environment; {fix}",
                    )
                )
    return found


RULES: list[Rule] = [
    ResourceRule(
        ENV_LITERALS,
        "Container env and env-style ConfigMap data hold no secret-looking literal; secrets "
        "come from secretKeyRef.",
        "mandatory",
        EnvSecretsConfig,
        check_env_secrets,
        "A literal under a secret-looking name fails whatever its value; an unknown value "
        "under another name is skipped with an advisory note.",
    ),
    ResourceRule(
        SECRETS_AS_FILES,
        "No container takes a Secret into its environment (secretKeyRef env, secretRef "
        "envFrom) unless listed in env_allowed with the reason its image needs it.",
        "mandatory",
        SecretsAsFilesConfig,
        check_secrets_as_files,
        "Unknown containers or env are skipped with an advisory note.",
    ),
]
