"""Tenant isolation: nothing one tenant sends is observable by another, through the LLM
response cache in particular (the result cache and session memory are covered with the
cost and tool tests)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from agent_app.keys import usage_key
from agent_app.records import ModelUsage
from agent_app.settings import DEFAULT_MODELS
from agent_app.usage import UsageBook, expected_costs
from app.appkit import REDIS_PASSWORD, Client, DevLLM, RedisServer, Service, run_async

# These tests start or use a real redis-server.
pytestmark = pytest.mark.redis

# Two texts of the same shape: same length, same tool call and the same answer (both
# products are 1008), so a tenant running either sees the same figures unless one of them
# was answered from something another tenant left behind.
SEEN = "Please note my PIN is 4821; compute 48 * 21"
UNSEEN = "Please note my PIN is 3628; compute 36 * 28"


def _observable(body: dict[str, Any]) -> dict[str, Any]:
    """What a tenant can learn from a task beyond its own content."""
    return {
        "status": body["status"],
        "tokens": body["tokens"],
        "cost_usd": body["cost_usd"],
        "cached": body["cached"],
        "attempts": body["attempts"],
        "model": body["model"],
    }


def test_llm_call_cache_reveals_nothing_across_tenants(
    acme: Client, globex: Client, worker: Service, devllm: DevLLM, clean_redis: redis.Redis
) -> None:
    # In sessions, so the (per-tenant) result cache stays out of it: only the call cache
    # could answer.
    first = acme.submit(SEEN, wait=60, session_id="acme-1").json()
    assert first["status"] == "completed"
    assert first["tokens"]["cached_calls"] == 0
    calls = devllm.total_requests()

    seen = globex.submit(SEEN, wait=60, session_id="globex-1").json()
    unseen = globex.submit(UNSEEN, wait=60, session_id="globex-2").json()
    assert seen["status"] == unseen["status"] == "completed"
    assert "1008" in seen["result"]
    assert _observable(seen) == _observable(unseen)
    assert seen["tokens"]["cached_calls"] == 0
    assert seen["cost_usd"] > 0
    # Both of globex's tasks went to the LLM in full (plan, tool round, answer).
    assert devllm.total_requests() == calls + 6

    # The cache still works within a tenant: acme's repeat is answered from it.
    again = acme.submit(SEEN, wait=60, session_id="acme-2").json()
    assert again["tokens"]["cached_calls"] == 3
    assert again["cost_usd"] == 0
    assert devllm.total_requests() == calls + 6
    # Entries are filed under their tenant's name.
    tenants = {key.split(":")[2] for key in clean_redis.scan_iter("agent:cache:*")}
    assert tenants == {"acme", "globex"}


def test_cost_estimates_move_only_with_the_tenants_own_tasks(
    redis_server: RedisServer, clean_redis: redis.Redis
) -> None:
    """A task's `selection` shows its expected cost, estimated from observed usage: means
    shared between tenants would move with another tenant's work."""

    async def scenario() -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        r = Redis.from_url(redis_server.url, password=REDIS_PASSWORD, decode_responses=True)
        book = UsageBook(r)
        task = "compute 12 * 12"
        before = expected_costs(
            DEFAULT_MODELS, await book.read("globex", DEFAULT_MODELS), task, 300
        )
        # As five of acme's tasks on the large model leave the means (see `usage`).
        observed = ModelUsage(
            tasks=5, input_tokens=4000, output_tokens=900, llm_calls=4, task_tokens=96
        )
        await r.hset(usage_key("acme", "large"), items=observed.hset_args())
        globex = expected_costs(
            DEFAULT_MODELS, await book.read("globex", DEFAULT_MODELS), task, 300
        )
        acme = expected_costs(DEFAULT_MODELS, await book.read("acme", DEFAULT_MODELS), task, 300)
        await r.aclose()
        return before, globex, acme

    before, globex, acme = run_async(scenario())
    assert globex == before
    assert acme != before
