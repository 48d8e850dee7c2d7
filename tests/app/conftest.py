"""Real parts for the agent app tests: a redis-server on a free port, the dev LLM server,
the API and workers as subprocesses talking over 127.0.0.1."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import structlog

from agent_app.auth import hash_key
from agent_app.loopback import redis_server_command
from app.appkit import (
    AGENT_APP,
    REDIS_PASSWORD,
    TENANT_KEYS,
    Client,
    DevLLM,
    Env,
    RedisServer,
    Service,
    _pings,
    free_port,
    start_service,
    stop,
    wait_http,
    wait_until,
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        redis_server_command(port, REDIS_PASSWORD, workdir), stdout=subprocess.DEVNULL
    )
    client = redis.Redis(port=port, password=REDIS_PASSWORD, decode_responses=True)
    wait_until(lambda: _pings(client), what="redis-server")
    yield RedisServer(port, f"redis://127.0.0.1:{port}/0", client)
    client.close()
    stop(proc)


@pytest.fixture(scope="session")
def devllm_server() -> Iterator[DevLLM]:
    port = free_port()
    proc = subprocess.Popen([AGENT_APP, "devllm", "--host", "127.0.0.1", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", proc)
    yield DevLLM(url)
    stop(proc)


@pytest.fixture
def devllm(devllm_server: DevLLM) -> DevLLM:
    httpx.delete(f"{devllm_server.url}/admin/faults", timeout=5).raise_for_status()
    return devllm_server


@pytest.fixture(scope="session")
def base_env(redis_server: RedisServer, devllm_server: DevLLM) -> Env:
    keys = ",".join(f"{tenant}={hash_key(key)}" for tenant, key in TENANT_KEYS.items())
    return Env().with_(
        host="127.0.0.1",
        redis_url=redis_server.url,
        redis_password=REDIS_PASSWORD,
        llm_base_url=devllm_server.base_url,
        llm_api_key="dev-llm-key",
        # Generous: the machine is shared, and a slow answer must not look like a fault.
        llm_timeout_s=10,
        max_wait_s=60,
        llm_retry_attempts=2,
        llm_retry_wait_initial_s=0.02,
        llm_retry_wait_max_s=0.1,
        breaker_failure_threshold=50,
        breaker_reset_s=1,
        api_keys_sha256=keys,
        release_version="1.2.3",
        release_track="canary",
        claim_idle_ms=3000,
        # Below the claim idle time, as the workers require.
        shutdown_grace_s=2.5,
        max_attempts=3,
        fetch_allowlist=f"{devllm_server.url}/pages/",
    )


@pytest.fixture(scope="session")
def api(base_env: Env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_service(base_env, "serve", tmp_path_factory.mktemp("api"))
    yield service
    stop(service.proc)


@pytest.fixture
def clean_redis(redis_server: RedisServer) -> redis.Redis:
    redis_server.client.flushall()
    return redis_server.client


@pytest.fixture
def worker_factory(base_env: Env, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(**overrides: Any) -> Service:
        service = start_service(base_env.with_(**overrides), "worker", tmp_path)
        started.append(service)
        return service

    yield start
    for service in started:
        stop(service.proc)


@pytest.fixture
def worker(worker_factory: Callable[..., Service], clean_redis: redis.Redis) -> Service:
    return worker_factory()


@pytest.fixture
def acme(api: Service, clean_redis: redis.Redis) -> Iterator[Client]:
    client = Client(api.url, "acme")
    yield client
    client.http.close()


@pytest.fixture
def globex(api: Service) -> Iterator[Client]:
    client = Client(api.url, "globex")
    yield client
    client.http.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that build the app in this process: its logging set-up is global."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
