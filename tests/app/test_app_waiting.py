"""Waiting costs Redis nothing per waiter: requests waiting for their task (`?wait=`) are
woken by the task's completion message, and read the task once, at their deadline, if it
never comes; a worker's tasks waiting for their tenant's slot do not each poll for it. A
backlog of waiters must not multiply into Redis traffic."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import httpx
import pytest
import redis
from redis.asyncio import Redis

from agent_app.keys import TASK_STREAM
from agent_app.limits import TenantSlots
from app.appkit import REDIS_PASSWORD, Client, RedisServer, run_async, wait_until

# These tests start or use a real redis-server.
pytestmark = pytest.mark.redis

WAITING = 10
WAIT_S = 3


def test_waiting_requests_read_nothing_until_their_deadline(
    acme: Client, clean_redis: redis.Redis
) -> None:
    # No worker runs: every task stays queued and every request waits its full time.
    answers: list[httpx.Response] = []

    def submit() -> None:
        answers.append(acme.submit(f"Summarise note {uuid.uuid4().hex}", wait=WAIT_S))

    threads = [threading.Thread(target=submit) for _ in range(WAITING)]
    for thread in threads:
        thread.start()
    wait_until(lambda: clean_redis.xlen(TASK_STREAM) == WAITING, timeout=30, what="admitted")
    clean_redis.config_resetstat()
    started = time.monotonic()
    for thread in threads:
        thread.join()
    waited = time.monotonic() - started
    stats = clean_redis.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): s["calls"] for name, s in stats.items()}
    assert [a.status_code for a in answers] == [202] * WAITING
    assert all(a.json()["status"] == "queued" for a in answers)
    assert waited > WAIT_S / 2  # they did wait, not answer at once
    # One read each, at the deadline; nothing else per request while waiting.
    assert calls.get("hgetall", 0) == WAITING
    assert sum(calls.values()) - calls.get("info", 0) <= WAITING + 3


def test_tasks_waiting_for_their_tenants_slot_do_not_each_poll_for_it(
    redis_server: RedisServer, clean_redis: redis.Redis
) -> None:
    poll_s = 0.05

    async def scenario() -> tuple[int, list[str]]:
        r = Redis.from_url(redis_server.url, password=REDIS_PASSWORD, decode_responses=True)
        here = TenantSlots(r, limit=1, lease_s=5, poll_s=poll_s)
        elsewhere = TenantSlots(r, limit=1, lease_s=5)
        order: list[str] = []

        async def run(holder: str) -> None:
            async with here.hold("acme", holder):
                order.append(holder)
                await asyncio.sleep(0.01)

        # Another worker holds acme's one slot; twenty of acme's tasks wait here.
        async with elsewhere.hold("acme", "elsewhere"):
            waiting = [asyncio.create_task(run(f"t{n}")) for n in range(WAITING * 2)]
            await asyncio.sleep(0.2)
            clean_redis.config_resetstat()
            await asyncio.sleep(10 * poll_s)
            stats = clean_redis.info("commandstats")
        await asyncio.wait_for(asyncio.gather(*waiting), 30)
        await r.aclose()
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)), order

    polls, order = run_async(scenario())
    # One of them polls, about ten times in that half second; not twenty times as many.
    assert polls <= 15
    # And every one of them got the slot in turn once it was free.
    assert sorted(order) == sorted(f"t{n}" for n in range(WAITING * 2))
