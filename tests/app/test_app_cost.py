"""Cost control: per-call cost into the tenant ledger, cost-limiting actions at 80%,
429 at 100%, model selection, the LLM response cache and the task result cache."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from agent_app.cost import call_cost, current_period
from agent_app.keys import ledger_key
from agent_app.selection import select_model
from agent_app.settings import DEFAULT_MODELS, ModelSpec
from app.appkit import Client, DevLLM, Service, metric_value

BUDGET = 100.0  # the default AGENT_MONTHLY_BUDGET_USD

# These tests start or use a real redis-server.
pytestmark = pytest.mark.redis


def _spend(r: redis.Redis, tenant: str, usd: float) -> None:
    r.hset(ledger_key(current_period()), tenant, usd)


def test_cost_is_priced_from_usage_and_charged_to_the_tenant(
    acme: Client, worker: Service, clean_redis: redis.Redis
) -> None:
    body = acme.submit("compute 3 * 3", wait=60, quality=0.5).json()
    assert body["model"] == "small"
    spec = DEFAULT_MODELS[0]
    expected = call_cost(spec, body["tokens"]["input"], body["tokens"]["output"])
    assert abs(body["cost_usd"] - expected) < 1e-12
    spent = float(clean_redis.hget(ledger_key(current_period()), "acme") or 0)
    assert abs(spent - body["cost_usd"]) < 1e-12
    assert clean_redis.hget(ledger_key(current_period()), "globex") is None
    assert metric_value(worker.metrics_url, "agent_llm_cost_usd_total", model="small") > 0


def test_budget_at_80_percent_applies_cost_limiting_actions(
    acme: Client,
    globex: Client,
    worker_factory: Callable[..., Service],
    devllm: DevLLM,
    clean_redis: redis.Redis,
) -> None:
    # One task at a time per worker, so both workers are sure to take some of the tasks.
    worker, second = worker_factory(worker_concurrency=1), worker_factory(worker_concurrency=1)
    _spend(clean_redis, "acme", 0.85 * BUDGET)
    normal = globex.submit("compute 4 * 4", wait=60, quality=0.8).json()
    assert normal["model"] == "medium"

    devllm.fault(latency_ms=250)
    limited = [acme.submit(f"compute {n} * 4", quality=0.8).json()["id"] for n in (5, 6, 7)]
    bodies = [acme.wait_final(task_id) for task_id in limited]
    for body in bodies:
        assert body["status"] == "completed"
        # Cheaper model: the quality requirement is relaxed while near the budget.
        assert body["model"] == "small"
        assert "budget above limit" in body["selection"]["reason"]
    # Lower concurrency: even on two workers, the tenant's tasks never overlapped.
    assert devllm.max_inflight("small") == 1
    workers = {clean_redis.hget(f"agent:task:{t}", "worker") for t in limited}
    assert len(workers) == 2
    assert clean_redis.exists("agent:slots:acme") == 0  # every slot was released
    # Longer cache TTL: four times the default hour.
    ttls = [clean_redis.ttl(k) for k in clean_redis.scan_iter("agent:cache:*")]
    assert max(ttls) > 3600
    actions = sum(
        metric_value(w.metrics_url, "agent_budget_actions_total", action="lower_concurrency")
        for w in (worker, second)
    )
    assert actions == 3


def test_budget_exhausted_gets_429_with_a_clear_message(
    acme: Client, globex: Client, api: Service, clean_redis: redis.Redis
) -> None:
    accepted = acme.submit("compute 5 + 5", idempotency_key="before-limit")
    _spend(clean_redis, "acme", BUDGET)
    response = acme.submit("compute 1 + 1")
    assert response.status_code == 429
    assert "acme" in response.json()["error"]
    assert "budget" in response.json()["error"]
    assert int(response.headers["Retry-After"]) > 0
    assert metric_value(api.metrics_url, "agent_tenant_budget_used_ratio", tenant="acme") == 1.0
    assert clean_redis.xlen("agent:tasks") == 1
    replay = acme.submit("compute 5 + 5", idempotency_key="before-limit")
    assert replay.status_code == 200
    assert replay.json()["id"] == accepted.json()["id"]
    assert globex.submit("compute 1 + 1").status_code == 202


def test_cache_hit_skips_the_llm_and_costs_nothing(
    acme: Client, worker: Service, devllm: DevLLM
) -> None:
    # Each task in a new session of its own: both run on a worker (a session rules out
    # the result cache) with the same conversation, so the second's LLM calls all hit.
    first = acme.submit("compute 12 / 4", wait=60, session_id="cache-a").json()
    assert first["tokens"]["cached_calls"] == 0
    calls = devllm.total_requests()
    hits_before = metric_value(worker.metrics_url, "agent_cache_requests_total", result="hit")

    # Same request up to whitespace: the normalised key matches.
    second = acme.submit("compute  12 / 4 ", wait=60, session_id="cache-b").json()
    assert second["status"] == "completed"
    assert second["result"] == first["result"]
    assert second["tokens"]["cached_calls"] == 3
    assert second["tokens"]["total"] == 0
    assert second["cost_usd"] == 0
    assert second["cached"] is None
    assert devllm.total_requests() == calls
    assert (
        metric_value(worker.metrics_url, "agent_cache_requests_total", result="hit")
        == hits_before + 3
    )
    assert metric_value(worker.metrics_url, "agent_cache_requests_total", result="miss") >= 3


def test_a_repeated_task_is_answered_from_the_result_cache(
    api: Service, acme: Client, globex: Client, worker: Service, devllm: DevLLM
) -> None:
    first = acme.submit("compute 12 / 4", wait=60)
    assert first.status_code == 200
    assert first.json()["cached"] is None
    calls = devllm.total_requests()
    misses = metric_value(api.metrics_url, "agent_result_cache_requests_total", result="miss")
    variant = first.json()["variant"]
    completed = metric_value(
        api.metrics_url, "agent_tasks_total", status="completed", variant=variant
    )

    # No wait asked, and none needed: the answer is final at once.
    second = acme.submit("compute  12 / 4 ")
    assert second.status_code == 200
    body = second.json()
    assert body["status"] == "completed"
    assert body["cached"] is True
    assert body["id"] != first.json()["id"]
    assert second.headers["Location"] == f"/v1/tasks/{body['id']}"
    assert body["result"] == first.json()["result"]
    assert body["steps"] == first.json()["steps"]
    assert body["tokens"] == {"input": 0, "output": 0, "total": 0, "cached_calls": 3}
    assert body["cost_usd"] == 0
    assert body["attempts"] == 0
    assert acme.task(body["id"]) == body
    assert devllm.total_requests() == calls
    assert metric_value(api.metrics_url, "agent_result_cache_requests_total", result="hit") == 1
    assert (
        metric_value(api.metrics_url, "agent_result_cache_requests_total", result="miss") == misses
    )
    assert (
        metric_value(api.metrics_url, "agent_tasks_total", status="completed", variant=variant)
        == completed + 1
    )

    # Results are per tenant: another one asking the same runs the task.
    other = globex.submit("compute 12 / 4", wait=60).json()
    assert other["status"] == "completed"
    assert other["cached"] is None


@pytest.mark.parametrize(
    ("task", "extra"),
    [
        pytest.param("what time is it in Europe/Paris", {}, id="non-deterministic tool"),
        pytest.param("remember my colour is teal", {}, id="tool with side effects"),
        pytest.param("compute 2 + 2", {"session_id": "s1"}, id="in a session"),
    ],
)
def test_tasks_depending_on_more_than_their_request_always_run(
    acme: Client, worker: Service, task: str, extra: dict[str, str]
) -> None:
    first = acme.submit(task, wait=60, **extra).json()
    second = acme.submit(task, wait=60, **extra).json()
    assert first["status"] == second["status"] == "completed"
    # Run by a worker again (its LLM calls may still hit the response cache).
    assert second["cached"] is None
    assert second["attempts"] == 1


def _costs(models: list[ModelSpec], prompt: int, completion: int) -> dict[str, float]:
    """Expected task costs of three calls of the given size on each model."""
    return {m.name: 3 * call_cost(m, prompt, completion) for m in models}


def test_selection_picks_cheapest_model_meeting_quality() -> None:
    chosen = select_model(DEFAULT_MODELS, 0.7, 100.0, _costs(DEFAULT_MODELS, 500, 300))
    assert chosen.model == "medium"
    assert "cheapest" in chosen.reason
    assert (
        select_model(DEFAULT_MODELS, 0.9, 100.0, _costs(DEFAULT_MODELS, 500, 300)).model == "large"
    )
    assert (
        select_model(DEFAULT_MODELS, 0.1, 100.0, _costs(DEFAULT_MODELS, 500, 300)).model == "small"
    )


def test_selection_respects_remaining_budget() -> None:
    large_cost = select_model(
        DEFAULT_MODELS, 0.9, 100.0, _costs(DEFAULT_MODELS, 500, 300)
    ).expected_cost_usd
    chosen = select_model(DEFAULT_MODELS, 0.9, large_cost / 2, _costs(DEFAULT_MODELS, 500, 300))
    assert chosen.model == "medium"
    assert "best that fits" in chosen.reason
    broke = select_model(DEFAULT_MODELS, 0.9, 0.0, _costs(DEFAULT_MODELS, 500, 300))
    assert broke.model == "small"
    assert "no model fits" in broke.reason


def test_selection_relief_when_limited() -> None:
    models = [
        *DEFAULT_MODELS,
        ModelSpec(name="tiny", input_usd_per_1k=0.0, output_usd_per_1k=0.0, quality=0.1),
    ]
    assert select_model(models, 0.8, 100.0, _costs(models, 100, 100)).model == "medium"
    limited = select_model(
        models, 0.8, 100.0, _costs(models, 100, 100), limited=True, quality_relief=0.2
    )
    assert limited.model == "small"
    assert limited.required_quality == 0.6
