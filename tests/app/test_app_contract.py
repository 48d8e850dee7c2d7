"""The app as the stack configures it: the env shape of components/agent_service.py and
stacks/program.py (single served model, JSON key hashes, budget alias, AGENT_PORT on
the worker, devllm port from the environment)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from agent_app.auth import hash_key
from agent_app.cost import current_period
from agent_app.keys import ledger_key
from agent_app.settings import SettingsError, load_settings
from app.appkit import (
    AGENT_APP,
    TENANT_KEYS,
    Client,
    DevLLM,
    Env,
    Service,
    free_port,
    start_service,
    wait_http,
)
from app.appkit import stop as stop_process

pytestmark = pytest.mark.redis

SERVED_MODEL = "Qwen/Qwen2.5-7B-Instruct"


@pytest.fixture
def stack_shaped(
    base_env: Env, tmp_path: Path, clean_redis: redis.Redis
) -> Iterator[tuple[Service, Service]]:
    hashes = json.dumps({tenant: hash_key(key) for tenant, key in TENANT_KEYS.items()})
    env = base_env.with_(
        task_stream="contract:tasks",
        llm_model=SERVED_MODEL,
        api_keys_sha256=hashes,
        tenant_monthly_budget_usd=50,
        environment="staging",
        log_level="info",
    )
    api = start_service(env, "serve", tmp_path)
    worker_port = free_port()
    # The worker deployment sets AGENT_PORT to the worker's own port.
    worker = start_service(env.with_(worker_port=worker_port), "worker", tmp_path)
    yield api, worker
    stop_process(worker.proc)
    stop_process(api.proc)


def test_stack_shaped_configuration_runs_tasks_on_the_served_model(
    stack_shaped: tuple[Service, Service], devllm: DevLLM, clean_redis: redis.Redis
) -> None:
    api, worker = stack_shaped
    client = Client(api.url, "globex")
    body = client.submit("compute 11 * 11", wait=60).json()
    client.http.close()
    assert body["status"] == "completed", body
    assert body["model"] == SERVED_MODEL
    assert devllm.requests()[SERVED_MODEL] == 3
    assert clean_redis.xlen("contract:tasks") == 0
    lines = [json.loads(line) for line in worker.log.read_text().splitlines() if line]
    assert all(line["environment"] == "staging" for line in lines)
    # The budget alias took effect: 40 of 50 USD spent is over the 80% limit.
    clean_redis.hset(ledger_key(current_period()), "globex", 40)
    limited = Client(api.url, "globex")
    assert (
        limited.submit("compute 1 + 1", wait=60)
        .json()["selection"]["reason"]
        .endswith("relaxed from 0.75 by 0.20)")
    )
    clean_redis.hset(ledger_key(current_period()), "globex", 50)
    assert limited.submit("compute 1 + 1").status_code == 429
    limited.http.close()


def test_devllm_takes_its_port_from_the_environment() -> None:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "AGENT_DEVLLM_PORT": str(port),
        "AGENT_DEVLLM_HOST": "127.0.0.1",
    }
    proc = subprocess.Popen([AGENT_APP, "devllm"], env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 200
    finally:
        stop_process(proc)


def test_served_model_must_be_in_an_explicit_price_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_LLM_MODEL", SERVED_MODEL)
    monkeypatch.setenv("AGENT_LLM_INPUT_USD_PER_1K", "0.5")
    settings = load_settings()
    assert [m.name for m in settings.models] == [SERVED_MODEL]
    assert settings.models[0].input_usd_per_1k == 0.5
    monkeypatch.setenv(
        "AGENT_MODELS",
        '[{"name": "other", "input_usd_per_1k": 0, "output_usd_per_1k": 0, "quality": 1}]',
    )
    with pytest.raises(SettingsError, match="is not in models"):
        load_settings()


def test_budget_alias_errors_name_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TENANT_MONTHLY_BUDGET_USD", "-3")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "AGENT_MONTHLY_BUDGET_USD or AGENT_TENANT_MONTHLY_BUDGET_USD" in str(info.value)
