from __future__ import annotations

import pytest
from policy_fixtures import only, patched, resource, workload

from costing.view import UNKNOWN, ResourceView
from policies.rules.env_secrets import (
    EnvSecretsConfig,
    SecretsAsFilesConfig,
    check_env_secrets,
    check_secrets_as_files,
    secret_looking_name,
)

ENV = "spec.template.spec.containers.0.env"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("REDIS_PASSWORD", True),
        ("OPENAI_API_KEY", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("GITHUB_TOKEN", True),
        ("MAX_TOKENS", False),
        ("TOKEN_BUDGET_PER_TENANT", True),
        ("REDIS_PASSWORD_FILE", False),
        ("LOG_LEVEL", False),
    ],
)
def test_secret_looking_names(name: str, secret: bool) -> None:
    assert secret_looking_name(name, EnvSecretsConfig()) is secret


def test_secret_key_ref_passes() -> None:
    view = patched(
        workload(),
        f"{ENV}.1",
        {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "r", "key": "p"}}},
    )
    assert check_env_secrets(view, EnvSecretsConfig()) == []
    assert check_env_secrets(workload(), EnvSecretsConfig()) == []


def test_literal_under_secret_name() -> None:
    view = patched(workload(), f"{ENV}.1", {"name": "REDIS_PASSWORD", "value": "hunter2hunter2"})
    found = only(check_env_secrets(view, EnvSecretsConfig()))
    assert found.resource == "Deployment 'agent-api'"
    assert found.message == (
        "Deployment 'agent-api': container 'api': spec.template.spec.containers[0].env[1] "
        "'REDIS_PASSWORD' is a literal value for a secret-looking name; move it to a Kubernetes "
        "Secret and use spec.template.spec.containers[0].env[1].valueFrom.secretKeyRef (or "
        "allow the name in allowed_names if it is not a secret)."
    )
    assert "hunter2" not in found.message


def test_unknown_literal_under_secret_name_still_fails() -> None:
    view = patched(workload(), f"{ENV}.1", {"name": "REDIS_PASSWORD", "value": UNKNOWN})
    assert only(check_env_secrets(view, EnvSecretsConfig())).resource == "Deployment 'agent-api'"


def test_credential_shaped_value_under_innocent_name() -> None:
    view = patched(workload(), f"{ENV}.0", {"name": "BACKEND", "value": "redis://u:pw@redis:6379"})
    found = only(check_env_secrets(view, EnvSecretsConfig()))
    assert found.message.startswith(
        "Deployment 'agent-api': container 'api': spec.template.spec.containers[0].env[0] "
        "'BACKEND' holds a value that looks like a credential;"
    )
    assert "pw@" not in found.message


def test_secret_name_from_a_config_map() -> None:
    source = {"configMapKeyRef": {"name": "settings", "key": "token"}}
    view = patched(workload(), f"{ENV}.1", {"name": "API_TOKEN", "valueFrom": source})
    found = only(check_env_secrets(view, EnvSecretsConfig()))
    assert "'API_TOKEN' takes a secret-looking value from configMapKeyRef" in found.message


def test_allowed_name() -> None:
    view = patched(workload(), f"{ENV}.1", {"name": "TOKEN_LIMIT", "value": "4096"})
    assert check_env_secrets(view, EnvSecretsConfig(allowed_names=("TOKEN_LIMIT",))) == []


def config_map(data: object) -> ResourceView:
    return resource(
        "kubernetes:core/v1:ConfigMap",
        "agent-settings",
        {"metadata": {"name": "agent-settings"}, "data": data},
    )


def test_env_style_config_map_without_secrets_passes() -> None:
    data = {"AGENT_LOG_LEVEL": "info", "AGENT_REDIS_URL": "redis://redis:6379/0"}
    assert check_env_secrets(config_map(data), EnvSecretsConfig()) == []


def test_config_map_with_a_secret_looking_key() -> None:
    found = only(check_env_secrets(config_map({"AGENT_API_TOKEN": "abc"}), EnvSecretsConfig()))
    assert found.resource == "ConfigMap 'agent-settings'"
    assert found.message == (
        "ConfigMap 'agent-settings': data.AGENT_API_TOKEN is a secret-looking name; move it to "
        "a Secret and read it with secretKeyRef (or secretRef in envFrom)."
    )


def test_config_map_with_credentials_in_a_url() -> None:
    data = {"AGENT_REDIS_URL": "redis://agent:hunter2@redis:6379/0"}
    found = only(check_env_secrets(config_map(data), EnvSecretsConfig()))
    assert found.message == (
        "ConfigMap 'agent-settings': data.AGENT_REDIS_URL holds a credential-shaped value; move "
        "it to a Secret and read it with secretKeyRef (or secretRef in envFrom)."
    )


def test_config_files_are_not_read_as_env_names() -> None:
    assert check_env_secrets(config_map({"redis.conf": "appendonly yes"}), EnvSecretsConfig()) == []


def test_unknown_config_map_data_is_undecided() -> None:
    [note] = check_env_secrets(config_map(UNKNOWN), EnvSecretsConfig())
    assert note.undetermined


def test_a_secret_in_the_app_containers_environment_fails() -> None:
    # The agent pods as they were: the Redis password from secretKeyRef into env.
    view = patched(
        workload(),
        f"{ENV}.1",
        {
            "name": "AGENT_REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "agent-secrets", "key": "redis-password"}},
        },
    )
    (found,) = [
        v
        for v in check_secrets_as_files(view, SecretsAsFilesConfig())
        if "AGENT_REDIS_PASSWORD" in v.message
    ]
    assert "container 'api': spec.template.spec.containers[0].env[1]" in found.message
    assert "mount the Secret as a read-only volume" in found.message
    loaded = patched(
        workload(),
        "spec.template.spec.containers.0.envFrom",
        [{"secretRef": {"name": "agent-secrets"}}],
    )
    assert any(
        "envFrom[0] loads a Secret" in v.message
        for v in check_secrets_as_files(loaded, SecretsAsFilesConfig())
    )


def test_a_third_party_container_listed_with_its_reason_may_keep_env() -> None:
    view = patched(
        workload(),
        f"{ENV}.1",
        {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    )
    allowed = SecretsAsFilesConfig(env_allowed={"api": "reads only its environment"})
    assert check_secrets_as_files(view, allowed) == []
    assert check_secrets_as_files(view, SecretsAsFilesConfig(env_allowed={})) != []
