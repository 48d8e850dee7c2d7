"""Worker kills: tasks under load while workers are SIGKILLed at random and restarted by a
supervisor loop. Every accepted task must end completed or dead-lettered exactly once."""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from app.appkit import (
    REDIS_PASSWORD,
    TENANT_KEYS,
    Client,
    DevLLM,
    Env,
    Service,
    new_task,
    run_async,
    wait_until,
)
from redis.asyncio import Redis

from agent_app.cost import current_period
from agent_app.keys import ledger_key
from agent_app.queue import TaskQueue
from agent_app.records import Outcome
from agent_app.settings import Settings
from agent_app.tasks import TaskStore
from faults.campaign import record
from faults.stack import (
    DEAD,
    FINAL,
    STREAM,
    RedisProcess,
    WorkerPool,
    campaign_env,
    dead_letter_counts,
    final_count,
    pending,
    records,
)

SEED = 20261124
TASKS = 500
WORKERS = 3
MAX_KILLS = 12
# Every DOOMED_EVERY-th task asks for a quality only the "large" model has, and every call
# to that model fails: those tasks must end dead-lettered, once each, despite the kills.
DOOMED_EVERY = 10

pytestmark = [pytest.mark.redis, pytest.mark.timeout(240)]


def test_worker_kills_lose_and_duplicate_nothing(
    redis_factory: Callable[[bool], RedisProcess],
    devllm_factory: Callable[..., DevLLM],
    api_factory: Callable[[Env], Service],
    worker_pool: Callable[[Env], WorkerPool],
) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    server = redis_factory(False)
    # Some latency keeps every worker busy with several tasks, so a kill interrupts work.
    llm = devllm_factory("--latency-ms", "150")
    env = campaign_env(server.url, llm.base_url)
    llm.fault(model="large", fail_next=10**9, status=500)
    api = api_factory(env)
    pool = worker_pool(env)
    pool.start(WORKERS)
    r = server.client()

    accepted: list[str] = []
    doomed: set[str] = set()
    refused: list[int] = []

    def submit_all() -> None:
        clients = {tenant: Client(api.url, tenant) for tenant in TENANT_KEYS}
        for n in range(TASKS):
            client = clients["acme" if n % 2 else "globex"]
            extra = {"quality": 0.9} if n % DOOMED_EVERY == 0 else {}
            response = client.submit(f"compute {n} * 7 + {n % 13}", **extra)
            if response.status_code == 202:
                accepted.append(response.json()["id"])
                if extra:
                    doomed.add(response.json()["id"])
            else:
                refused.append(response.status_code)
        for client in clients.values():
            client.http.close()

    submitter = threading.Thread(target=submit_all, daemon=True)
    submitter.start()

    # The supervisor: kill a random worker now and then while work is under way, and
    # start a new one in its place at once.
    kills = 0
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.3, 1.0))
        ids = list(accepted)
        done = final_count(r, ids)
        if not submitter.is_alive() and done == len(ids):
            break
        if kills < MAX_KILLS and (submitter.is_alive() or done < 0.95 * TASKS):
            pool.kill(rng.randrange(len(pool.live)))
            kills += 1
            pool.start(1)
    submitter.join(timeout=60)

    # A worker killed between writing a result and acknowledging its entry leaves the entry
    # pending; a survivor reclaims and acknowledges it without redoing the task. Whatever is
    # still not final after this is counted as lost below, once the run is recorded.
    with contextlib.suppress(TimeoutError):
        wait_until(
            lambda: pending(r) == 0 and r.xlen(STREAM) == 0, timeout=60, what="queue drained"
        )

    found = records(r, accepted)
    statuses = {task_id: fields.get("status", "missing") for task_id, fields in found.items()}
    lost_ids = [
        task_id
        for task_id, fields in found.items()
        if fields.get("status") not in FINAL or "finished_at" not in fields
    ]
    dead_entries = dead_letter_counts(r)
    finished_logs = pool.event_counts("task finished")
    dead_logs = pool.event_counts("task dead-lettered")
    # A task is duplicated if more than one final outcome was produced for it anywhere: two
    # "finished" or "dead-lettered" log events, two dead-letter entries, or a dead-letter
    # entry for a task whose record says it completed.
    duplicated = [
        task_id
        for task_id in accepted
        if finished_logs[task_id] + dead_logs[task_id] > 1
        or dead_entries[task_id] > 1
        or (dead_entries[task_id] and statuses[task_id] != "dead_lettered")
    ]
    missing_dead_entries = [
        task_id
        for task_id, status in statuses.items()
        if status == "dead_lettered" and not dead_entries[task_id]
    ]
    readers = {tenant: Client(api.url, tenant) for tenant in TENANT_KEYS}

    def api_status(task_id: str) -> str:
        reader = readers[found[task_id].get("tenant", "acme")]
        response = reader.http.get(f"/v1/tasks/{task_id}")
        return str(response.json()["status"]) if response.is_success else str(response)

    by_api = {task_id: api_status(task_id) for task_id in accepted}
    for reader in readers.values():
        reader.http.close()
    api_disagrees = [task_id for task_id in accepted if by_api[task_id] != statuses[task_id]]
    to_final = [
        float(fields["finished_at"]) - float(fields["created_at"])
        for fields in found.values()
        if "finished_at" in fields
    ]
    attempts = [int(fields.get("attempts", 0)) for fields in found.values()]
    counted = list(statuses.values())

    record(
        "worker-kills",
        tried={
            "tasks": TASKS,
            "of which doomed to fail": len(doomed),
            "workers": WORKERS,
            "kills": kills,
        },
        lost={
            "tasks lost": len(lost_ids) + len(missing_dead_entries),
            "duplicated": len(duplicated),
        },
        figures={
            "accepted": len(accepted),
            "refused": len(refused),
            "completed": counted.count("completed"),
            "failed": counted.count("failed"),
            "dead-lettered": counted.count("dead_lettered"),
            "dead-letter entries": r.xlen(DEAD),
            "redelivered": sum(1 for n in attempts if n > 1),
            "max attempts": max(attempts, default=0),
            "API disagrees with Redis": len(api_disagrees),
            "max time to final s": round(max(to_final, default=0.0), 2),
        },
        seconds=time.monotonic() - began,
    )
    r.close()

    assert refused == []
    assert len(accepted) == TASKS
    assert lost_ids == []
    assert missing_dead_entries == []
    assert duplicated == []
    assert api_disagrees == []
    assert set(counted) <= {"completed", "dead_lettered"}
    assert sum(dead_entries.values()) == counted.count("dead_lettered")
    for task_id, status in statuses.items():
        if status == "dead_lettered":
            assert found[task_id].get("error"), task_id
    assert len(doomed) == TASKS // DOOMED_EVERY
    for task_id in doomed:
        assert statuses[task_id] == "dead_lettered", task_id
        assert re.search(r"HTTP 500|circuit for model 'large' is open", found[task_id]["error"])
    # The run means something only if kills really interrupted work.
    assert kills >= 3
    assert sum(1 for n in attempts if n > 1) >= 1


def test_late_failure_of_a_duplicate_attempt_changes_nothing(
    redis_factory: Callable[[bool], RedisProcess],
) -> None:
    """The race a reclaimed entry allows, made deterministic: attempt A is slow, the entry is
    reclaimed and attempt B completes the task, then A fails on its last attempt. A's failure
    must neither reopen the record ("retrying") nor dead-letter a completed task."""
    server = redis_factory(False)

    async def scenario() -> tuple[bool, bool, dict[str, str], int, int]:
        r = Redis.from_url(server.url, password=REDIS_PASSWORD, decode_responses=True)
        store = TaskStore(r, 3600)
        queue = TaskQueue(r, Settings())
        await queue.ensure_group()
        await store.create(new_task("t1", "acme", "compute 6 * 7"))
        # Two deliveries of the task: A's, and the one B completes it from.
        await queue.enqueue("t1", "acme")
        await queue.enqueue("t1", "acme")
        [(entry_a, _), (entry_b, _)] = await queue.read("worker-a", 2, 1000)
        ledger = ledger_key(current_period())
        await r.hincrbyfloat(ledger, "acme", 0.25)
        first = await store.start("t1", "worker-a", ledger)
        # The tenant's spend comes with the start, so the worker needs no read of its own.
        assert (first.attempt, first.spent_usd) == (1, 0.25)
        assert (await store.start("t1", "worker-b", ledger)).attempt == 2
        assert await queue.finish(
            entry_b, "t1", "acme", Outcome(status="completed", result="42", worker="worker-b")
        )
        reopened = await store.update("t1", Outcome(status="retrying", error="attempt 1: late"))
        dead = await queue.dead_letter(
            entry_a,
            "t1",
            "acme",
            {"task_id": "t1", "tenant": "acme", "error": "late", "attempts": "1"},
        )
        record: Any = await r.hgetall("agent:task:t1")
        dead_entries = await r.xlen(queue.dead_stream)
        still_pending = int((await r.xpending(queue.stream, queue.group))["pending"])
        await r.aclose()
        return reopened, dead, record, dead_entries, still_pending

    reopened, dead, found, dead_entries, still_pending = run_async(scenario())
    assert not reopened
    assert not dead
    assert found["status"] == "completed"
    assert found["result"] == "42"
    assert "error" not in found
    assert dead_entries == 0
    assert still_pending == 0
