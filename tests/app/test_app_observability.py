"""Metric names and labels, traces (in memory and over OTLP/HTTP), JSON logs, releases."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
import redis
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent_app.records import TaskRecord
from agent_app.releases import assign_variant
from agent_app.runtime import Runtime
from agent_app.settings import Settings
from agent_app.tasks import TaskStore
from agent_app.worker import Worker
from app.appkit import (
    Client,
    DevLLM,
    RedisServer,
    Service,
    free_port,
    metric_samples,
    new_task,
    run_async,
)

RELEASE = {"release_version": "1.2.3", "release_track": "canary"}

# These tests start or use a real redis-server.
pytestmark = pytest.mark.redis


def test_metric_names_and_labels(api: Service, acme: Client, worker: Service) -> None:
    # The API outlives this test, so its counters are compared before and after.
    before = metric_samples(api.metrics_url)
    body = acme.submit("compute 8 - 3", wait=60).json()
    assert body["status"] == "completed"
    samples = metric_samples(api.metrics_url) + metric_samples(worker.metrics_url)
    for name, labels, _ in samples:
        assert labels.get("release_version") == "1.2.3", name
        assert labels.get("release_track") == "canary", name

    def find(name: str, **labels: str) -> list[float]:
        return [
            v
            for n, lab, v in samples
            if n == name and all(lab.get(k) == x for k, x in labels.items())
        ]

    variant = body["variant"]
    # The API counts the tasks it answers from the result cache, in earlier tests too.
    completed_before = sum(
        v
        for n, lab, v in before
        if n == "agent_tasks_total" and lab["status"] == "completed" and lab["variant"] == variant
    )
    assert sum(find("agent_tasks_total", status="completed", variant=variant)) == (
        completed_before + 1
    )
    submitted = [
        v
        for n, lab, v in before
        if n == "agent_tasks_submitted_total" and lab["variant"] == variant
    ]
    assert find("agent_tasks_submitted_total", variant=variant) == [sum(submitted) + 1]
    assert find("agent_task_duration_seconds_count", status="completed") == [1.0]
    assert find("agent_tool_calls_total", tool="calculator", outcome="ok") == [1.0]
    model = body["model"]
    for token_type in ("input", "output"):
        assert (
            find(
                "gen_ai_client_token_usage_sum",
                gen_ai_operation_name="chat",
                gen_ai_request_model=model,
                gen_ai_token_type=token_type,
            )[0]
            > 0
        )
    assert (
        find(
            "gen_ai_client_operation_duration_seconds_count",
            gen_ai_request_model=model,
            error_type="",
        )[0]
        == 3
    )
    assert find("agent_llm_cost_usd_total", model=model)[0] > 0
    assert find("agent_cache_requests_total", result="miss")[0] == 3
    assert find("agent_llm_circuit_state", model=model) == [0.0]
    # Scraped on the metrics port: no request of the public API is in flight.
    assert find("agent_http_inflight_requests") == [0.0]
    assert find("agent_worker_inflight_tasks") == [0.0]
    # The backlog is not a process's series: neither role exports it at /metrics.
    assert find("agent_queue_depth") == find("agent_queue_pending") == []
    assert httpx.get(f"{worker.url}/ready").status_code == 200
    assert httpx.get(f"{worker.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{api.url}/ready").json() == {"status": "ready", "problems": []}


def test_worker_logs_are_json_with_trace_task_tenant_and_release(
    acme: Client, worker: Service
) -> None:
    task_id = acme.submit("compute 9 + 1", wait=60).json()["id"]
    # Every line is JSON, the libraries' (uvicorn's) included.
    lines = [json.loads(line) for line in worker.log.read_text().splitlines() if line]
    finished = [e for e in lines if e.get("event") == "agent finished"]
    assert len(finished) == 1
    entry = finished[0]
    assert entry["task_id"] == task_id
    assert entry["tenant"] == "acme"
    assert len(entry["trace_id"]) == 32
    assert entry["release_version"] == "1.2.3"
    assert entry["release_track"] == "canary"
    assert all(e["release_track"] == "canary" for e in lines)
    assert any(e.get("logger", "").startswith("uvicorn") for e in lines)


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str, int]] = []  # noqa: RUF012 - shared by handler instances

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.rfile.read(length)
        self.received.append((self.path, self.headers["Content-Type"], length))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def otlp_collector() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", free_port()), _Collector)
    _Collector.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_agent_spans_and_otlp_export(
    redis_server: RedisServer,
    devllm: DevLLM,
    clean_redis: redis.Redis,
    otlp_collector: str,
    restore_logging: None,
) -> None:
    settings = Settings(
        redis_url=redis_server.url,
        redis_password="test-redis-password",
        llm_base_url=devllm.base_url,
        otlp_endpoint=otlp_collector,
        task_stream="trace:tasks",
        claim_idle_ms=1000,
        shutdown_grace_s=0.5,
    )
    exporter = InMemorySpanExporter()
    task_id = uuid.uuid4().hex

    async def run() -> TaskRecord | None:
        runtime = Runtime.build(settings, "worker", SimpleSpanProcessor(exporter))
        worker = Worker(runtime, consumer="trace-test")
        store = TaskStore(runtime.redis, settings.task_ttl_s)
        await store.create(new_task(task_id, "acme", "compute 2 ^ 10"))
        await worker.queue.ensure_group()
        await worker.queue.enqueue(task_id, "acme")
        stop = asyncio.Event()
        runner = asyncio.create_task(worker.run(stop))
        for _ in range(200):
            record = await store.get(task_id)
            if record and record.status == "completed":
                break
            await asyncio.sleep(0.05)
        stop.set()
        await runner
        await worker.aclose()
        await runtime.aclose()  # flushes the OTLP batch
        return record

    record = run_async(run())
    assert record is not None
    assert "2 ^ 10 = 1024" in (record.result or "")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {"invoke_agent", "plan", "chat small", "execute_tool calculator"} <= set(spans)
    root = spans["invoke_agent"]
    assert spans["plan"].parent is not None
    assert spans["plan"].parent.span_id == root.context.span_id
    assert spans["execute_tool calculator"].context.trace_id == root.context.trace_id
    chat_attributes: Any = spans["chat small"].attributes
    assert chat_attributes["gen_ai.request.model"] == "small"
    assert chat_attributes["gen_ai.usage.input_tokens"] > 0
    assert root.resource.attributes["service.version"] == "dev"
    paths = {(path, ctype) for path, ctype, _ in _Collector.received}
    assert ("/v1/traces", "application/x-protobuf") in paths


def test_variant_assignment_is_consistent_weighted_and_stable() -> None:
    tenants = [f"tenant-{n}" for n in range(4000)]
    two = {t: assign_variant("exp", t, {"a": 3.0, "b": 1.0}) for t in tenants}
    assert two == {t: assign_variant("exp", t, {"b": 1.0, "a": 3.0}) for t in tenants}
    share_a = sum(v == "a" for v in two.values()) / len(tenants)
    assert 0.72 < share_a < 0.78
    three = {t: assign_variant("exp", t, {"a": 3.0, "b": 1.0, "c": 1.0}) for t in tenants}
    moved = [t for t in tenants if three[t] != two[t]]
    # Adding a variant only moves tenants into it, never between the old ones.
    assert all(three[t] == "c" for t in moved)
    assert 0.15 < len(moved) / len(tenants) < 0.25
    other = {t: assign_variant("other-exp", t, {"a": 3.0, "b": 1.0}) for t in tenants}
    assert other != two


def test_metrics_are_served_on_the_private_port_only(api: Service, acme: Client) -> None:
    # A submission sets the tenant's budget gauge: a series naming the tenant.
    assert acme.submit("compute 40 + 2").status_code in (200, 202)
    for path in ("/metrics", "/metrics/queue"):
        public = httpx.get(f"{api.url}{path}", timeout=5)
        assert public.status_code == 404, path
        assert "acme" not in public.text
        assert "budget" not in public.text
    private = metric_samples(api.metrics_url)
    assert any(
        name == "agent_tenant_budget_used_ratio" and labels.get("tenant") == "acme"
        for name, labels, _ in private
    )
    # The metrics port serves nothing of the API itself.
    assert httpx.get(f"{api.metrics_url}/v1/tasks/x", timeout=5).status_code == 404
