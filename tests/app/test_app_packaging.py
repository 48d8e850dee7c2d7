"""The container image definition and the command line's start-up behaviour."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


def _locked(lock: Path) -> dict[str, str]:
    """Name -> version of every distribution a lock file installs on this platform."""
    pinned: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if line[:1].isalnum():
            req = Requirement(line.rstrip(" \\"))
            if req.marker is None or req.marker.evaluate():
                (version,) = (spec.version for spec in req.specifier)
                pinned[str(canonicalize_name(req.name))] = version
    return pinned


def _third_party_imports() -> set[str]:
    """Top-level modules the app imports, the standard library and itself apart."""
    modules: set[str] = set()
    for path in (ROOT / "agent_app").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"__future__", "agent_app"}


def test_dockerfile_installs_the_app_lock_and_nothing_else() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"pip install --require-hashes --no-deps -r requirements-app.lock", text)
    assert re.search(r"pip install --no-deps \.", text)
    assert len(re.findall(r"pip install", text)) == 2


def test_the_app_lock_holds_every_app_dependency_and_no_pulumi() -> None:
    """The image installs requirements-app.lock: every module the app imports must come
    with it, at the version the tests ran (the dev lock's), and none of the Pulumi
    packages."""
    image = _locked(ROOT / "requirements-app.lock")
    dev = _locked(ROOT / "requirements.lock")
    providers = importlib.metadata.packages_distributions()
    missing = {
        module: providers.get(module)
        for module in _third_party_imports()
        if not {canonicalize_name(d) for d in providers.get(module, [])} & set(image)
    }
    assert not missing, f"imported by agent_app but not in the image's lock: {missing}"
    # Not imported by the app, but what uvicorn and the LLM client pick up when present.
    assert {"uvloop", "httptools", "aiohttp"} <= set(image)
    assert not [name for name in image if name.startswith("pulumi")]
    assert {name: dev[name] for name in image} == image


def test_this_environment_is_the_dev_lock() -> None:
    """scripts/bootstrap installs requirements.lock exactly: every locked distribution
    at its version, and nothing the lock does not list but the project itself and the
    venv's own pip."""
    locked = _locked(ROOT / "requirements.lock")
    installed = {
        str(canonicalize_name(d.metadata["Name"])): d.version
        for d in importlib.metadata.distributions()
    }
    unlocked = set(installed) - set(locked) - {"agent-platform", "pip", "setuptools"}
    assert not unlocked, f"installed but not in requirements.lock: {sorted(unlocked)}"
    assert {name: installed.get(name) for name in locked} == locked


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
