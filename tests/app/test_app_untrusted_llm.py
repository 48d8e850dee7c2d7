"""The LLM's answers are untrusted input: names it makes up, usage it leaves out, answers
with nothing in them or far too much. Each gets a clear, bounded outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from agent_app.cost import current_period
from agent_app.keys import ledger_key
from agent_app.tools import default_registry
from app.appkit import Client, DevLLM, Service, metric_samples, metric_value

pytestmark = pytest.mark.redis


def _anomalies(worker: Service, kind: str) -> float:
    return metric_value(worker.url, "agent_llm_response_anomalies_total", kind=kind)


def test_an_invented_tool_name_is_refused_and_labelled_unknown(
    acme: Client, worker: Service, devllm: DevLLM
) -> None:
    devllm.fault(malformed_next=1, malformed="invented_tool")
    body = acme.submit("compute 6 * 7", wait=60).json()
    assert body["status"] == "completed", body
    [step] = [s for s in body["steps"] if s["type"] == "tool"]
    assert step["tool"].startswith("evil_tool_")
    assert "unknown tool" in step["result"]
    labels = {
        sample_labels["tool"]
        for name, sample_labels, _ in metric_samples(worker.url)
        if name == "agent_tool_calls_total"
    }
    assert labels == {"unknown"}
    assert labels <= {*default_registry().names, "unknown"}
    assert _anomalies(worker, "unknown_tool") == 1


def test_an_answer_without_usage_is_charged_an_estimate_and_counted(
    acme: Client, worker: Service, devllm: DevLLM, clean_redis: redis.Redis
) -> None:
    devllm.fault(malformed_next=3, malformed="no_usage")
    body = acme.submit("compute 12 * 12", wait=60).json()
    assert body["status"] == "completed", body
    assert body["tokens"]["input"] > 0
    assert body["tokens"]["output"] > 0
    assert body["cost_usd"] > 0
    spent = float(clean_redis.hget(ledger_key(current_period()), "acme") or 0)
    assert spent == pytest.approx(body["cost_usd"])
    assert _anomalies(worker, "missing_usage") == 3


def test_an_estimate_is_not_below_the_usage_the_endpoint_reports(
    acme: Client, worker: Service, devllm: DevLLM
) -> None:
    reported = acme.submit("compute 21 * 2", wait=60).json()
    devllm.fault(malformed_next=3, malformed="no_usage")
    estimated = acme.submit("compute 21 * 3", wait=60).json()
    assert estimated["tokens"]["input"] >= reported["tokens"]["input"]
    assert estimated["tokens"]["output"] >= reported["tokens"]["output"]


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("no_choices", "answered no choices"),
        ("null_content", "answered an empty message (no content, no tool calls)"),
    ],
)
def test_an_unusable_answer_fails_the_task_with_a_clear_error(
    acme: Client,
    worker_factory: Callable[..., Service],
    devllm: DevLLM,
    clean_redis: redis.Redis,
    kind: str,
    error: str,
) -> None:
    devllm.fault(malformed_next=1000, malformed=kind)
    worker = worker_factory(claim_idle_ms=500, shutdown_grace_s=0.4, max_attempts=2)
    task_id = acme.submit("compute 2 + 2").json()["id"]
    body = acme.wait_final(task_id)
    assert body["status"] == "dead_lettered"
    assert error in body["error"]
    assert "index out of range" not in body["error"]
    assert body["result"] is None
    assert _anomalies(worker, kind if kind == "no_choices" else "empty_message") >= 2


def test_one_unusable_answer_is_retried_within_the_call(
    acme: Client, worker: Service, devllm: DevLLM
) -> None:
    devllm.fault(malformed_next=1, malformed="no_choices")
    body = acme.submit("compute 9 * 9", wait=60).json()
    assert body["status"] == "completed", body
    assert body["attempts"] == 1
    assert "9 * 9 = 81" in body["result"]


def test_an_oversized_answer_is_cut_and_marked(
    acme: Client, worker: Service, devllm: DevLLM, clean_redis: redis.Redis
) -> None:
    devllm.fault(malformed_next=2, malformed="oversized", oversized_chars=2 * 1024 * 1024)
    body = acme.submit("compute 3 + 4", wait=60).json()
    assert body["status"] == "completed", body
    limit = 20_000
    assert len(body["result"]) < limit + 200
    assert "[answer cut:" in body["result"]
    plan = body["steps"][0]
    assert plan["type"] == "plan"
    assert len(plan["content"]) < limit + 200
    stored: Any = clean_redis.hstrlen(f"agent:task:{body['id']}", "result")
    assert stored < limit + 200
    assert _anomalies(worker, "oversized") == 2
