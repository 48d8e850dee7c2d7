"""Budget burst: a tenant with a small budget submits a burst of expensive tasks while the
LLM is slow and every worker slot is busy, then its spend jumps to 95% with tasks still
queued. Spend must stay within the budget plus the LLM calls in flight when it was reached,
and every reservation must be settled."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from app.appkit import TENANT_KEYS, Client, DevLLM, Env, Service, run_async, wait_until

from agent_app.cost import current_period
from agent_app.keys import ledger_key, reservations_key
from faults.campaign import record
from faults.stack import FINAL, RedisProcess, WorkerPool, campaign_env, records

pytestmark = [pytest.mark.redis, pytest.mark.timeout(300)]

BUDGET = 0.02
WORKERS = 2
SLOTS = 4  # per worker: 8 in all, as in the run
LATENCY_MS = 600  # per LLM call, slow (the run had 1.5 s)
BURST = 30
BACKGROUND = 16  # another tenant's tasks, so every slot is busy during the burst
QUEUED = 12


def _task(n: int) -> str:
    return f"compute {n} * 7 + {n % 13}"


def _submit_all(url: str, jobs: list[tuple[str, str, float]]) -> list[httpx.Response]:
    """(tenant, task, quality) each submitted at once, on a connection of its own."""

    async def one(tenant: str, task: str, quality: float) -> httpx.Response:
        headers = {"X-API-Key": TENANT_KEYS[tenant]}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            return await http.post("/v1/tasks", json={"task": task, "quality": quality})

    async def everything() -> list[httpx.Response]:
        return list(await asyncio.gather(*(one(*job) for job in jobs)))

    return run_async(everything())


def test_budget_burst_with_a_slow_llm_and_every_slot_busy(
    redis_factory: Callable[[bool], RedisProcess],
    devllm_factory: Callable[..., DevLLM],
    api_factory: Callable[[Env], Service],
    worker_pool: Callable[[Env], WorkerPool],
) -> None:
    began = time.monotonic()
    server = redis_factory(True)
    llm = devllm_factory()
    env = campaign_env(
        server.url,
        llm.base_url,
        tenant_budgets_usd=json.dumps({"acme": BUDGET}),
        worker_concurrency=SLOTS,
    )
    api = api_factory(env)
    pool = worker_pool(env)
    pool.start(WORKERS)
    r = server.client()
    ledger = ledger_key(current_period())
    acme = Client(api.url, "acme")

    # Two tasks observed on the large model, so estimates are the tenant's real usage.
    for n in (900, 901):
        assert acme.submit(_task(n), wait=60, quality=0.95).json()["model"] == "large"

    # Phase 1: from 6% spent, a burst on the slow LLM alongside another tenant's load.
    r.hset(ledger, "acme", 0.06 * BUDGET)
    llm.fault(latency_ms=LATENCY_MS)
    jobs = [("acme", _task(n), 0.95) for n in range(100, 100 + BURST)]
    jobs += [("globex", _task(n), 0.75) for n in range(300, 300 + BACKGROUND)]
    responses = _submit_all(api.url, jobs)
    burst = [res.json() for res, job in zip(responses, jobs, strict=True) if job[0] == "acme"]
    codes = [res.status_code for res, job in zip(responses, jobs, strict=True) if job[0] == "acme"]
    burst_ids = [body["id"] for body, code in zip(burst, codes, strict=True) if code == 202]
    other_ids = [
        res.json()["id"] for res, job in zip(responses, jobs, strict=True) if job[0] == "globex"
    ]
    everyone = burst_ids + other_ids
    wait_until(
        lambda: all(f.get("status") in FINAL for f in records(r, everyone).values()),
        timeout=180,
        what="burst final",
    )
    after_burst = records(r, burst_ids)
    spent_burst = float(r.hget(ledger, "acme") or 0)
    reserved_burst = sum(
        json.loads(f["selection"])["expected_cost_usd"] for f in after_burst.values()
    )
    excess_burst = sum(
        max(0.0, float(f.get("cost_usd", 0)) - json.loads(f["selection"])["expected_cost_usd"])
        for f in after_burst.values()
    )

    # Phase 2: tasks admitted at 6%, then the spend jumps to 95% while they are queued
    # behind a full set of slots.
    r.hset(ledger, "acme", 0.06 * BUDGET)
    llm.fault(latency_ms=0)
    pool.stop_all()
    queued = [acme.submit(_task(n), quality=0.95).json()["id"] for n in range(500, 500 + QUEUED)]
    r.hset(ledger, "acme", 0.95 * BUDGET)
    llm.fault(latency_ms=LATENCY_MS)
    large_before = llm.requests().get("large", 0)
    pool.start(WORKERS)
    wait_until(
        lambda: all(f.get("status") in FINAL for f in records(r, queued).values()),
        timeout=180,
        what="queued tasks final",
    )
    after_jump = records(r, queued)
    large_calls_jump = llm.requests().get("large", 0) - large_before
    spent_jump = float(r.hget(ledger, "acme") or 0)
    # Past 80% a tenant runs one task at a time, and each call is checked first: one call
    # can be in flight when the budget is reached, and a task's cost bounds its calls.
    one_call = max(float(f.get("cost_usd", 0)) for f in after_jump.values())
    statuses = [f.get("status") for f in after_jump.values()]
    reservations_left = r.exists(reservations_key("acme"))
    not_final = [
        task_id
        for task_id, f in {**records(r, everyone), **after_jump}.items()
        if f.get("status") not in FINAL
    ]
    acme.http.close()

    figures: dict[str, Any] = {
        "burst accepted": len(burst_ids),
        "burst refused (429)": codes.count(429),
        "burst models": sorted({f["model"] for f in after_burst.values()}),
        "burst spend / budget": round(spent_burst / BUDGET, 4),
        "burst reserved + 6% / budget": round((reserved_burst + 0.06 * BUDGET) / BUDGET, 4),
        "jump spend / budget": round(spent_jump / BUDGET, 4),
        "jump completed": statuses.count("completed"),
        "jump stopped by budget": statuses.count("failed"),
        "jump models that ran": sorted(
            {f["model"] for f in after_jump.values() if float(f.get("cost_usd", 0)) > 0}
        ),
        "jump calls to large": large_calls_jump,
        "bound for the jump (one call) USD": round(one_call, 6),
    }
    record(
        "budget-burst",
        tried={
            "burst tasks": BURST,
            "background tasks": BACKGROUND,
            "queued at the jump": QUEUED,
            "slots": WORKERS * SLOTS,
            "llm latency ms": LATENCY_MS,
        },
        lost={
            "burst overshoot beyond reservations USD": round(
                max(0.0, spent_burst - BUDGET - excess_burst), 6
            ),
            "jump overshoot beyond one call USD": round(
                max(0.0, spent_jump - BUDGET - one_call), 6
            ),
            "reservations left": reservations_left,
            "tasks not final": len(not_final),
        },
        figures=figures,
        seconds=time.monotonic() - began,
    )
    r.close()

    assert codes.count(202) + codes.count(429) == BURST
    assert burst_ids
    assert codes.count(429) > 0
    assert reserved_burst + 0.06 * BUDGET <= BUDGET + 1e-9
    assert spent_burst <= BUDGET + excess_burst + 1e-9
    assert all(f["status"] == "completed" for f in after_burst.values())
    assert spent_jump <= BUDGET + one_call
    # Queued on the large model, the tasks ran on cheaper ones (those stopped before their
    # first call keep the model they were queued with).
    assert large_calls_jump == 0
    assert "large" not in figures["jump models that ran"]
    assert statuses.count("failed") > 0
    assert all(
        "budget" in f.get("error", "") for f in after_jump.values() if f["status"] == "failed"
    )
    assert reservations_left == 0
    assert not_final == []
