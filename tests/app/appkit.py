"""Helpers for the agent app tests: processes, ports, waiting, and an API client."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis

from agent_app.injection.rules import check_injection
from agent_app.llm import BreakerListener, LLMClient
from agent_app.loopback import free_port as free_port
from agent_app.loopback import stop as stop
from agent_app.loopback import wait_http as wait_http
from agent_app.metrics import Metrics
from agent_app.records import TaskRecord
from agent_app.releases import Release
from agent_app.selection import select_model
from agent_app.settings import DEFAULT_MODELS, Settings
from agent_app.tracing import build_provider, tracer
from agent_app.usage import expected_costs
from agent_app.validation import TaskRequest

T = TypeVar("T")

REDIS_PASSWORD = "test-redis-password"
TENANT_KEYS = {"acme": "acme-secret-key", "globex": "globex-secret-key"}
AGENT_APP = str(Path(sys.executable).with_name("agent-app"))


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run without its last step, set_event_loop(None): that step makes a later
    asyncio.get_event_loop() in this thread raise, which breaks other suites in the same
    session (Pulumi's mocks call it)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def llm_client(
    settings: Settings, on_breaker_change: BreakerListener | None = None
) -> tuple[LLMClient, Metrics]:
    """An LLM client in the test's own process, with metrics of its own (release "t")."""
    metrics = Metrics(Release("t", "stable"))
    provider = build_provider(settings, "test")
    return LLMClient(settings, metrics, tracer(provider), on_breaker_change), metrics


def new_task(task_id: str, tenant: str, task: str, model: str = "small") -> TaskRecord:
    """A queued task's record as the API writes it, for tests that drive a worker or the
    store without the API."""
    return TaskRecord(
        id=task_id,
        tenant=tenant,
        status="queued",
        request=TaskRequest(task=task),
        model=model,
        selection=select_model(
            DEFAULT_MODELS, 0.5, 100.0, expected_costs(DEFAULT_MODELS, {}, task, 300)
        ),
        injection=check_injection(task, 0.4, 0.8),
        variant="control",
        created_at=time.time(),
    )


def llm_retries(metrics: Metrics, model: str) -> float:
    """Retries counted by an `llm_client`'s metrics for one model."""
    value = metrics.registry.get_sample_value(
        "agent_llm_retries_total",
        {"model": model, "release_version": "t", "release_track": "stable"},
    )
    return value or 0.0


def wait_until(
    predicate: Callable[[], Any], timeout: float = 60, interval: float = 0.05, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what or predicate}")


@dataclass
class RedisServer:
    port: int
    url: str
    client: redis.Redis


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@dataclass
class DevLLM:
    url: str

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def fault(self, **fault: Any) -> None:
        httpx.post(f"{self.url}/admin/faults", json=fault, timeout=5).raise_for_status()

    def max_inflight(self, model: str) -> int:
        stats = httpx.get(f"{self.url}/admin/stats", timeout=5).json()
        value: int = stats["max_inflight"].get(model, 0)
        return value

    def total_requests(self) -> int:
        return sum(self.requests().values())

    def requests(self) -> dict[str, int]:
        counts: dict[str, int] = httpx.get(f"{self.url}/admin/stats", timeout=5).json()["requests"]
        return counts


@dataclass
class Env:
    """AGENT_* settings shared by the API and workers of one test configuration."""

    values: dict[str, str] = field(default_factory=dict)

    def with_(self, **overrides: Any) -> Env:
        merged = dict(self.values)
        merged.update({f"AGENT_{k.upper()}": str(v) for k, v in overrides.items()})
        return Env(merged)

    def process_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
        env.update(self.values)
        return env


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    # Where Prometheus scrapes it: the API's private metrics port, the worker's own port.
    metrics_url: str


def start_service(env: Env, command: str, tmp_path: Path, prefix: tuple[str, ...] = ()) -> Service:
    port = free_port()
    worker_port = free_port()
    metrics_port = free_port()
    log = tmp_path / f"{command}-{uuid.uuid4().hex[:6]}.log"
    env = env.with_(port=port, worker_port=worker_port, metrics_port=metrics_port)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*prefix, AGENT_APP, command],
            env=env.process_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port if command == 'serve' else worker_port}"
    try:
        wait_http(f"{url}/health", proc)
    except (RuntimeError, TimeoutError) as exc:
        stop(proc)
        raise RuntimeError(f"{command} failed to start:\n{log.read_text()}") from exc
    metrics_url = f"http://127.0.0.1:{metrics_port}" if command == "serve" else url
    if command == "serve":
        wait_http(f"{metrics_url}/metrics", proc)
    return Service(proc, url, log, metrics_url)


class Client:
    """HTTP client for the API, authenticated as one tenant."""

    def __init__(self, base_url: str, tenant: str | None) -> None:
        headers = {"X-API-Key": TENANT_KEYS[tenant]} if tenant else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=90)

    def submit(self, task: str, wait: float | None = None, **extra: Any) -> httpx.Response:
        params = {"wait": wait} if wait is not None else {}
        headers = {}
        if "idempotency_key" in extra:
            headers["Idempotency-Key"] = extra.pop("idempotency_key")
        return self.http.post(
            "/v1/tasks", json={"task": task, **extra}, params=params, headers=headers
        )

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/tasks/{task_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def wait_final(self, task_id: str, timeout: float = 60) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            body = self.task(task_id)
            done = body["status"] in ("completed", "failed", "dead_lettered")
            return body if done else None

        result: dict[str, Any] = wait_until(final, timeout, 0.1, f"task {task_id}")
        return result


def fields_named(body: dict[str, Any]) -> list[str]:
    """The inputs an error answer names (its `fields`), in order."""
    return [f["field"] for f in body["fields"]]


def metric_samples(url: str, path: str = "/metrics") -> list[tuple[str, dict[str, str], float]]:
    """The samples a scrape of `url` (a service's `metrics_url`) gets."""
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(f"{url}{path}", timeout=5)
    response.raise_for_status()
    text = response.text
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def metric_value(url: str, name: str, path: str = "/metrics", **labels: str) -> float:
    return sum(
        value
        for sample, sample_labels, value in metric_samples(url, path)
        if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )
