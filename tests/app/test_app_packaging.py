"""The container image definition and the command line's start-up behaviour."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent_app.auth import hash_key
from agent_app.settings import Settings, SettingsError, load_settings
from app.appkit import AGENT_APP

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "agent_app" / "Dockerfile"
HADOLINT = Path(sys.executable).with_name("hadolint")


def test_dockerfile_is_clean_under_hadolint() -> None:
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base.group(1))
    assert "latest" not in text
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users
    assert not users[-1].startswith(("root", "0"))
    assert 'ENTRYPOINT ["agent-app"]' in text


def test_dockerfile_installs_every_app_dependency() -> None:
    """The image installs a filtered dependency list; every import of the app is in it."""
    command = re.search(r'python -c "(import tomllib;.*?)"', DOCKERFILE.read_text())
    assert command is not None
    prefixes = re.search(r"app = \((.*?)\)", command.group(1))
    assert prefixes is not None
    kept = tuple(p.strip(" '") for p in prefixes.group(1).split(","))
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    selected = [d for d in deps if d.startswith(kept)]
    names = {re.split(r"[<>=!~ ]", d)[0] for d in selected}
    assert {
        "fastapi",
        "uvicorn",
        "redis",
        "prometheus-client",
        "structlog",
        "stamina",
        "openai",
        "httpx",
        "pydantic",
        "pydantic-settings",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-http",
    } <= names
    assert not any(n.startswith("pulumi") for n in names)


def test_bad_settings_fail_at_start_with_a_clear_message() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "AGENT_PORT": "eighty",
        "AGENT_RELEASE_TRACK": "beta",
        "AGENT_API_KEYS_SHA256": "acme=not-a-hash",
        "AGENT_LLM_API_KEY": "sk-very-secret-value",
    }
    result = subprocess.run(
        [AGENT_APP, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "AGENT_PORT" in result.stderr
    assert "AGENT_RELEASE_TRACK" in result.stderr
    assert "AGENT_API_KEYS_SHA256" in result.stderr
    assert "sk-very-secret-value" not in result.stderr + result.stdout


def test_settings_parse_the_documented_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hash_key("k1")
    monkeypatch.setenv("AGENT_API_KEYS_SHA256", f" acme={digest.upper()} , ")
    monkeypatch.setenv("AGENT_TENANT_BUDGETS_USD", '{"acme": 5}')
    monkeypatch.setenv("AGENT_FETCH_ALLOWLIST", "https://docs.example.org/guide/")
    monkeypatch.setenv("AGENT_REDIS_PASSWORD", "pw")
    settings = load_settings()
    assert settings.api_keys_sha256 == {digest: "acme"}
    assert settings.budget_for("acme") == 5
    assert settings.budget_for("globex") == settings.monthly_budget_usd
    assert settings.task_stream == "agent:tasks"
    assert settings.consumer_group == "agent-workers"
    assert settings.port == 8080
    assert settings.worker_port == 8081
    assert "pw" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AGENT_REDIS_URL", "redis://user:pw@host:6379/0", "AGENT_REDIS_PASSWORD"),
        ("AGENT_REDIS_URL", "http://host", "redis://"),
        ("AGENT_FETCH_ALLOWLIST", "ftp://x/", "http(s) URL prefix"),
        ("AGENT_MODELS", '[{"name": "a"}]', "input_usd_per_1k"),
        ("AGENT_EXPERIMENT_VARIANTS", '{"a": 0}', "positive weight"),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert name in str(info.value)
    assert message in str(info.value)


def test_settings_defaults_are_valid() -> None:
    assert Settings().release_track == "stable"
