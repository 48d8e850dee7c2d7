"""Queue semantics: idempotency, at-least-once delivery with one final result, reclaiming
after a worker dies, dead-lettering and the queue depth metric."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from agent_app.cost import current_period
from agent_app.keys import ledger_key
from agent_app.records import TaskRecord, TaskView
from agent_app.runtime import Runtime
from agent_app.settings import Settings
from agent_app.tasks import TaskStore, completion
from agent_app.worker import Worker
from app.appkit import (
    REDIS_PASSWORD,
    Client,
    DevLLM,
    RedisServer,
    Service,
    fields_named,
    metric_value,
    new_task,
    run_async,
    wait_until,
)

STREAM = "agent:tasks"
GROUP = "agent-workers"
DEAD = "agent:tasks:dead"

# These tests start or use a real redis-server.
pytestmark = pytest.mark.redis


def _pending(r: redis.Redis) -> int:
    info = r.xpending(STREAM, GROUP)
    return int(info["pending"])


def test_idempotency_key_returns_the_same_task_once(
    acme: Client, globex: Client, clean_redis: redis.Redis
) -> None:
    first = acme.submit("compute 2 + 3", idempotency_key="order-1")
    assert first.status_code == 202
    again = acme.submit("compute 2 + 3", idempotency_key="order-1")
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert clean_redis.xlen(STREAM) == 1

    conflict = acme.submit("compute 9 + 9", idempotency_key="order-1")
    assert conflict.status_code == 409
    assert fields_named(conflict.json()) == ["Idempotency-Key"]

    # Keys are scoped per tenant: another tenant's identical key is a new task.
    other = globex.submit("compute 2 + 3", idempotency_key="order-1")
    assert other.status_code == 202
    assert other.json()["id"] != first.json()["id"]
    assert clean_redis.xlen(STREAM) == 2


def test_killed_worker_task_is_reclaimed_and_completed_exactly_once(
    acme: Client,
    worker_factory: Callable[..., Service],
    devllm: DevLLM,
    clean_redis: redis.Redis,
) -> None:
    devllm.fault(latency_ms=700)
    doomed = worker_factory()
    task_id = acme.submit("compute 40 + 2").json()["id"]
    wait_until(lambda: acme.task(task_id)["status"] == "running", what="task running")
    wait_until(lambda: devllm.total_requests() >= 1, what="first LLM call")
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait()
    assert acme.task(task_id)["status"] == "running"

    devllm.fault(latency_ms=0)
    rescuer = worker_factory()
    body = acme.wait_final(task_id)
    assert body["status"] == "completed"
    assert "40 + 2 = 42" in body["result"]
    assert body["attempts"] == 2
    assert [s["type"] for s in body["steps"]].count("answer") == 1
    record: Any = clean_redis.hgetall(f"agent:task:{task_id}")
    assert record["worker"].endswith(f"-{rescuer.proc.pid}")
    # Every LLM call was charged once: the ledger holds exactly the task's cost.
    spent = float(clean_redis.hget(ledger_key(current_period()), "acme") or 0)
    assert abs(spent - body["cost_usd"]) < 1e-12
    assert _pending(clean_redis) == 0
    assert clean_redis.xlen(DEAD) == 0
    assert metric_value(rescuer.metrics_url, "agent_reclaimed_entries_total") >= 1


def test_redelivered_entry_of_a_finished_task_changes_nothing(
    acme: Client, worker: Service, devllm: DevLLM, clean_redis: redis.Redis
) -> None:
    body = acme.submit("compute 5 * 5", wait=60).json()
    assert body["status"] == "completed"
    calls = devllm.total_requests()
    clean_redis.xadd(STREAM, {"task_id": body["id"], "tenant": "acme"})
    wait_until(
        lambda: clean_redis.xlen(STREAM) == 0 and _pending(clean_redis) == 0,
        what="duplicate acknowledged",
    )
    again = acme.task(body["id"])
    assert again["finished_at"] == body["finished_at"]
    assert again["attempts"] == body["attempts"]
    assert devllm.total_requests() == calls


def test_completion_message_carries_the_final_record(
    acme: Client, worker: Service, clean_redis: redis.Redis
) -> None:
    """A waiting request answers from the message, so it must hold the record exactly as
    a read of it would give it: same fields, same values."""
    listener = clean_redis.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(f"{STREAM}:done")
    answered = acme.submit("compute 6 * 7", wait=60).json()
    assert answered["status"] == "completed"
    # The subscription's own confirmation is read (and dropped) as a None first.
    message = None
    deadline = time.monotonic() + 10
    while message is None and time.monotonic() < deadline:
        message = listener.get_message(timeout=1)
    listener.close()
    assert message is not None
    task_id, announced = completion(message["data"])
    assert task_id == answered["id"]
    assert announced is not None
    stored = acme.task(task_id)
    shown = TaskView.of(announced).model_dump(mode="json")
    assert shown == stored
    assert shown == answered


def test_task_failing_every_attempt_goes_to_dead_letter_stream(
    acme: Client,
    worker_factory: Callable[..., Service],
    devllm: DevLLM,
    clean_redis: redis.Redis,
) -> None:
    devllm.fault(fail_next=1000, status=503)
    worker = worker_factory(claim_idle_ms=500, shutdown_grace_s=0.4, max_attempts=3)
    task_id = acme.submit("compute 1 + 1").json()["id"]
    body = acme.wait_final(task_id)
    assert body["status"] == "dead_lettered"
    assert "HTTP 503" in body["error"]
    assert body["attempts"] == 3
    entries: Any = clean_redis.xrange(DEAD)
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields["task_id"] == task_id
    assert fields["attempts"] == "3"
    assert "HTTP 503" in fields["error"]
    assert _pending(clean_redis) == 0
    assert metric_value(worker.metrics_url, "agent_dead_letters_total") == 1


def test_queue_backlog_is_exported_once_and_as_keda_reads_it(
    acme: Client,
    api: Service,
    worker_factory: Callable[..., Service],
    devllm: DevLLM,
    clean_redis: redis.Redis,
) -> None:
    clean_redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    for n in range(3):
        assert acme.submit(f"compute {n} + 1").status_code == 202
    labels = {"stream": STREAM, "group": GROUP}

    def backlog() -> tuple[float, float]:
        return (
            metric_value(api.metrics_url, "agent_queue_depth", "/metrics/queue", **labels),
            metric_value(api.metrics_url, "agent_queue_pending", "/metrics/queue", **labels),
        )

    def keda_reads() -> tuple[int, int]:
        # What KEDA's redis-streams scaler reads: `lagCount` the group's lag,
        # `pendingEntriesCount` its pending count (XINFO GROUPS).
        (group,) = clean_redis.xinfo_groups(STREAM)
        return int(group["lag"]), int(group["pending"])

    # Undelivered: the real backlog, which `pendingEntriesCount` alone never saw.
    assert backlog() == keda_reads() == (3, 0)

    # Slow calls (3 a task), so the tasks are still running while the second worker
    # starts and the backlog is read.
    devllm.fault(latency_ms=4000)
    workers = [worker_factory(), worker_factory()]
    wait_until(lambda: _pending(clean_redis) == 3, what="all delivered")
    assert backlog() == keda_reads() == (0, 3)
    # Every target Prometheus scrapes per pod: none exports the backlog, so `sum()` over
    # them cannot count it once per replica (it was 3x here before, with 2 workers).
    for target in (api.metrics_url, *(w.metrics_url for w in workers)):
        assert metric_value(target, "agent_queue_depth") == 0
        assert metric_value(target, "agent_queue_pending") == 0
        assert "agent_queue_depth" not in httpx.get(f"{target}/metrics", timeout=5).text
    wait_until(lambda: backlog() == (0, 0), timeout=90, what="queue drained")


def test_sigterm_lets_the_worker_finish_its_running_task(
    acme: Client,
    worker_factory: Callable[..., Service],
    devllm: DevLLM,
    clean_redis: redis.Redis,
) -> None:
    devllm.fault(latency_ms=300)
    worker = worker_factory()
    task_id = acme.submit("compute 20 + 22").json()["id"]
    wait_until(lambda: devllm.total_requests() >= 1, what="first LLM call")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=40) == 0
    body = acme.task(task_id)
    assert body["status"] == "completed"
    assert body["attempts"] == 1
    assert _pending(clean_redis) == 0


def _idle_ms(r: redis.Redis) -> list[int]:
    """How long each pending entry has gone without its claim being refreshed."""
    entries: Any = r.xpending_range(STREAM, GROUP, min="-", max="+", count=100)
    return [int(e["time_since_delivered"]) for e in entries]


def test_a_draining_worker_keeps_its_entries_claimed(
    acme: Client,
    worker_factory: Callable[..., Service],
    devllm: DevLLM,
    clean_redis: redis.Redis,
) -> None:
    """With the grace just below the claim idle time, a stopping worker's running entries
    must never look idle long enough for another worker's XAUTOCLAIM to take them (and run
    them a second time) while it still finishes them."""
    claim_idle_ms, grace_s = 4000, 3.9
    devllm.fault(hang_next=2, hang_s=60)  # both tasks' first LLM call, until released
    worker = worker_factory(
        claim_idle_ms=claim_idle_ms, shutdown_grace_s=grace_s, worker_concurrency=2
    )
    ids = [acme.submit(f"compute {n} + 40").json()["id"] for n in range(2)]
    wait_until(lambda: devllm.total_requests() >= 2, what="both tasks in their first call")
    # The signal comes late in a refresh period (a refresh every third of the claim idle
    # time), the worst case for a worker that stops refreshing when it drains.
    wait_until(
        lambda: len(idle := _idle_ms(clean_redis)) == 2 and min(idle) >= 1100,
        interval=0.005,
        what="entries idle for most of a refresh period",
    )
    worker.proc.send_signal(signal.SIGTERM)
    longest = 0
    hold_until = time.monotonic() + 3.2
    while time.monotonic() < hold_until:
        longest = max([longest, *_idle_ms(clean_redis)])
        time.sleep(0.01)
    httpx.delete(f"{devllm.url}/admin/faults", timeout=5).raise_for_status()  # lets them go
    assert worker.proc.wait(timeout=30) == 0
    assert longest < claim_idle_ms, f"an entry went {longest} ms without a refresh"
    for task_id in ids:
        body = acme.task(task_id)
        assert (body["status"], body["attempts"]) == ("completed", 1)
    assert _pending(clean_redis) == 0


def test_a_busy_worker_stops_within_its_grace_and_hands_back_what_it_cut_short(
    acme: Client,
    worker_factory: Callable[..., Service],
    devllm: DevLLM,
    clean_redis: redis.Redis,
) -> None:
    """Every slot busy with a task that will not end in time: the worker stops taking
    entries at the signal, exits within the grace counted from it (Kubernetes kills it
    at terminationGracePeriodSeconds), and the tasks it cancelled are taken by another
    worker at once, not a claim idle time (here a minute) later."""
    grace_s = 2.0
    devllm.fault(hang_next=2, hang_s=120)
    worker = worker_factory(claim_idle_ms=60_000, shutdown_grace_s=grace_s, worker_concurrency=2)
    ids = [acme.submit(f"compute {n} * 3").json()["id"] for n in range(3)]
    wait_until(lambda: devllm.total_requests() >= 2, what="both slots in an LLM call")
    signalled = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=90) == 0
    stopped_after = time.monotonic() - signalled
    # The process's own exit (HTTP server, connections) takes a moment beyond the grace.
    assert stopped_after < grace_s + 3, f"stopped {stopped_after:.1f} s after SIGTERM"
    cut_short = [i for i in ids if acme.task(i)["attempts"] == 1]
    assert len(cut_short) == 2
    assert acme.task(next(i for i in ids if i not in cut_short))["attempts"] == 0

    httpx.delete(f"{devllm.url}/admin/faults", timeout=5).raise_for_status()
    worker_factory(claim_idle_ms=60_000, shutdown_grace_s=grace_s)
    for task_id in ids:
        body = acme.wait_final(task_id, timeout=30)
        assert body["status"] == "completed"
    assert [acme.task(i)["attempts"] for i in cut_short] == [2, 2]


def test_an_entry_read_as_the_stop_comes_is_released_unstarted(
    redis_server: RedisServer, devllm: DevLLM, clean_redis: redis.Redis, restore_logging: None
) -> None:
    """The worker is blocked reading the stream when the stop comes and the read returns a
    new entry: the worker must not start it (it is stopping), but hand it back claimable
    at once, instead of running it in its drain or leaving it for a claim idle time."""
    settings = Settings(
        redis_url=redis_server.url,
        redis_password=REDIS_PASSWORD,
        llm_base_url=devllm.base_url,
        claim_idle_ms=60_000,
        shutdown_grace_s=5,
    )

    async def scenario() -> tuple[TaskRecord | None, list[Any]]:
        runtime = Runtime.build(settings, "worker")
        worker = Worker(runtime, consumer="stopping")
        store = TaskStore(runtime.redis, settings.task_ttl_s)
        await worker.queue.ensure_group()
        stop = asyncio.Event()
        runner = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(0.3)  # in its one-second blocking read by now
        stop.set()
        await store.create(new_task("late", "acme", "compute 1 + 1"))
        await worker.queue.enqueue("late", "acme")
        await asyncio.wait_for(runner, 30)
        pending: Any = await runtime.redis.xpending_range(
            worker.queue.stream, worker.queue.group, min="-", max="+", count=10
        )
        record = await store.get("late")
        await worker.aclose()
        await runtime.aclose()
        return record, pending

    record, pending_entries = run_async(scenario())
    assert record is not None
    assert (record.status, record.attempts) == ("queued", 0)
    # Delivered to the stopping worker by its last read, then released: as idle as an
    # abandoned entry, so the next worker's XAUTOCLAIM takes it.
    [entry] = pending_entries
    assert entry["consumer"] == "stopping"
    assert int(entry["time_since_delivered"]) >= settings.claim_idle_ms
