"""Settings that start wrong: refused at start with a message naming the variable, and a
Redis that refuses the service's credentials reported as the configuration fault it is,
not as a passing outage."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from agent_app.settings import SettingsError, load_settings
from app.appkit import AGENT_APP, Client, Env, Service, start_service, stop, wait_until

# What a message written for people never contains.
TRACEBACK = ("Traceback", 'File "', "errors.pydantic.dev")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"acme": -5}', "greater than 0"),
        ('{"acme": 0}', "greater than 0"),
        ('{"acme": NaN}', "finite number"),
        ('{"acme": "lots"}', "valid number"),
        ('{"no spaces please": 5}', "must match"),
    ],
)
def test_tenant_budgets_must_be_positive_amounts_for_valid_tenants(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("AGENT_TENANT_BUDGETS_USD", value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "AGENT_TENANT_BUDGETS_USD" in str(info.value)
    assert message in str(info.value)


def test_a_misspelt_variable_is_refused_with_the_name_it_resembles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_WORKER_CONCURENCY", "8")
    monkeypatch.setenv("AGENT_MAX_ATTEMPT", "5")
    monkeypatch.setenv("AGENT_COMPLETELY_UNKNOWN", "x")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "AGENT_WORKER_CONCURENCY: not a setting; did you mean AGENT_WORKER_CONCURRENCY?" in text
    assert "AGENT_MAX_ATTEMPT: not a setting; did you mean AGENT_MAX_ATTEMPTS?" in text
    assert "AGENT_COMPLETELY_UNKNOWN: not a setting" in text


def test_variables_of_others_are_not_taken_for_misspelt_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Kubernetes service links for Services named agent-api and agent-api-canary, the
    # budget's documented alias, devllm's own variables and the project's tooling's.
    for name, value in {
        "AGENT_API_SERVICE_HOST": "10.96.0.12",
        "AGENT_API_SERVICE_PORT": "80",
        "AGENT_API_SERVICE_PORT_HTTP": "80",
        "AGENT_API_PORT": "tcp://10.96.0.12:80",
        "AGENT_API_PORT_80_TCP": "tcp://10.96.0.12:80",
        "AGENT_API_PORT_80_TCP_PROTO": "tcp",
        "AGENT_API_PORT_80_TCP_PORT": "80",
        "AGENT_API_PORT_80_TCP_ADDR": "10.96.0.12",
        "AGENT_API_CANARY_SERVICE_HOST": "10.96.0.13",
        "AGENT_TENANT_MONTHLY_BUDGET_USD": "50",
        "AGENT_DEVLLM_PORT": "8000",
        "AGENT_PLATFORM_CAMPAIGN_DIR": "/tmp/campaign",
    }.items():
        monkeypatch.setenv(name, value)
    assert load_settings().monthly_budget_usd == 50


def test_a_misspelt_port_variable_is_not_excused_as_a_service_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_WORKR_PORT", "9000")
    with pytest.raises(SettingsError, match="did you mean AGENT_WORKER_PORT"):
        load_settings()


def test_the_grace_must_be_shorter_than_the_claim_idle_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_CLAIM_IDLE_MS", "30000")
    monkeypatch.setenv("AGENT_SHUTDOWN_GRACE_S", "30")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "AGENT_SHUTDOWN_GRACE_S (30 s) must be shorter than AGENT_CLAIM_IDLE_MS" in str(
        info.value
    )
    monkeypatch.setenv("AGENT_SHUTDOWN_GRACE_S", "29.5")
    assert load_settings().shutdown_grace_s == 29.5


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_the_commands_refuse_bad_settings_with_exit_2_and_no_traceback(command: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "AGENT_TENANT_BUDGETS_USD": json.dumps({"acme": -5}),
        "AGENT_WORKER_CONCURENCY": "8",
        "AGENT_REDIS_PASSWORD": "hunter2-very-secret",
    }
    result = subprocess.run(
        [AGENT_APP, command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "AGENT_TENANT_BUDGETS_USD" in result.stderr
    assert "did you mean AGENT_WORKER_CONCURRENCY?" in result.stderr
    assert not any(mark in result.stderr for mark in TRACEBACK)
    assert "hunter2" not in result.stderr + result.stdout


def _log_lines(service: Service) -> list[dict[str, object]]:
    lines = service.log.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.mark.redis
def test_a_wrong_redis_password_is_reported_as_misconfiguration_not_outage(
    base_env: Env, tmp_path: Path
) -> None:
    env = base_env.with_(redis_password="not-the-password")
    worker = start_service(env, "worker", tmp_path)
    api = start_service(env, "serve", tmp_path)
    client = Client(api.url, "acme")
    try:
        for service in (api, worker):
            ready = httpx.get(f"{service.url}/ready", timeout=10)
            assert ready.status_code == 503
            [problem] = ready.json()["problems"]
            assert "refused this service's credentials" in problem
            assert "AGENT_REDIS_PASSWORD" in problem
        answers = [client.submit("compute 1 + 1") for _ in range(3)]
        for answer in answers:
            assert answer.status_code == 503
            assert "not transient" in answer.json()["error"]
            assert "retry later" not in answer.json()["error"]
            assert "Retry-After" not in answer.headers
        # The worker keeps trying (its poll meets the refusal again and again) while the
        # process stays up, without a traceback, and each process logs the fault once.
        time.sleep(5)
        assert worker.proc.poll() is None
        for service in (api, worker):
            text = service.log.read_text(errors="replace")
            assert "Traceback" not in text
            assert "not-the-password" not in text
            refused = [e for e in _log_lines(service) if "refused the credentials" in str(e)]
            assert len(refused) == 1, refused
            assert refused[0]["level"] == "error"
            assert not [e for e in _log_lines(service) if e.get("event") == "redis unavailable"]
    finally:
        client.http.close()
        stop(api.proc)
        stop(worker.proc)


@pytest.mark.redis
def test_a_worker_started_before_redis_waits_for_it(base_env: Env, tmp_path: Path) -> None:
    from app.appkit import free_port

    worker = start_service(
        base_env.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0"), "worker", tmp_path
    )
    try:
        ready = httpx.get(f"{worker.url}/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["problems"][0].startswith("redis unreachable")
        time.sleep(1)
        assert worker.proc.poll() is None
        wait_until(lambda: "redis unavailable; retrying" in worker.log.read_text(), timeout=10)
    finally:
        stop(worker.proc)


def _kubernetes_secret_volume(directory: Path, files: dict[str, str]) -> Path:
    """The layout the kubelet writes for a Secret volume: each key a link through
    `..data` to a timestamped directory, so an update swaps one link."""
    stamped = directory / "..2026_12_05_02_00_00.000000001"
    stamped.mkdir(parents=True)
    for name, value in files.items():
        (stamped / name).write_text(value + "\n")
    (directory / "..data").symlink_to(stamped.name)
    for name in files:
        (directory / name).symlink_to(f"..data/{name}")
    return directory


def _clear_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [n for n in os.environ if n.startswith("AGENT_")]:
        monkeypatch.delenv(name)


def test_secrets_are_read_from_the_mounted_directory_before_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _clear_agent_env(monkeypatch)
    digest = "ab" * 32
    secrets = _kubernetes_secret_volume(
        tmp_path / "secrets",
        {
            "AGENT_REDIS_PASSWORD": "from-the-file",
            "AGENT_API_KEYS_SHA256": json.dumps({"acme": digest}),
        },
    )
    monkeypatch.setenv("AGENT_SECRETS_DIR", str(secrets))
    # A variable left over (a developer's shell) does not override the mounted Secret.
    monkeypatch.setenv("AGENT_REDIS_PASSWORD", "from-the-environment")
    monkeypatch.setenv("AGENT_LLM_API_KEY", "local-key")
    settings = load_settings()
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "from-the-file"
    assert settings.api_keys_sha256 == {digest: "acme"}
    # What the directory does not hold still comes from the environment (local runs).
    assert settings.llm_api_key.get_secret_value() == "local-key"


def test_a_secret_file_that_cannot_be_read_is_refused_naming_its_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _clear_agent_env(monkeypatch)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    # A key the Secret lost: its link points at nothing.
    (secrets / "AGENT_LLM_API_KEY").symlink_to("..data/AGENT_LLM_API_KEY")
    monkeypatch.setenv("AGENT_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("AGENT_LLM_API_KEY", "would-be-used-silently")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "AGENT_LLM_API_KEY: cannot read its file in AGENT_SECRETS_DIR" in text
    assert "would-be-used-silently" not in text
    assert not any(marker in text for marker in TRACEBACK)


def test_a_secrets_directory_that_is_not_there_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _clear_agent_env(monkeypatch)
    monkeypatch.setenv("AGENT_SECRETS_DIR", str(tmp_path / "not-mounted"))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "AGENT_SECRETS_DIR" in str(info.value)
    assert "not a directory" in str(info.value)
