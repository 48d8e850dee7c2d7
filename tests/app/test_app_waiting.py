"""Requests waiting for their task (`?wait=`) cost Redis nothing while they wait: they
are woken by the task's completion message, and read the task once, at their deadline,
if it never comes. A backlog of waiting requests must not multiply into Redis traffic."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest
import redis

from agent_app.keys import TASK_STREAM
from app.appkit import Client, wait_until

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
