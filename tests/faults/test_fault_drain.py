"""Rolling restarts under load: workers are stopped with SIGTERM, as Kubernetes stops
pods, with the shutdown grace close to the claim idle time. A stopping worker finishes
its tasks within the grace while the others keep working; no task may be run a second
time because its entry looked abandoned while it was still being finished."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from app.appkit import Client, DevLLM, Env, Service, wait_until

from faults.campaign import record
from faults.stack import (
    FINAL,
    GROUP,
    STREAM,
    RedisProcess,
    WorkerPool,
    campaign_env,
    final_count,
    pending,
    records,
)

SEED = 20261204
TASKS = 150
WORKERS = 3
ROLLS = 12
CLAIM_IDLE_MS = 2000
GRACE_S = 1.95  # just below the claim idle time, as the start-up rule requires
LLM_CALLS_PER_TASK = 3  # plan, the memory_set round, the answer

pytestmark = [pytest.mark.redis, pytest.mark.timeout(240)]


def test_rolling_restarts_run_no_task_twice(
    redis_factory: Callable[[bool], RedisProcess],
    devllm_factory: Callable[..., DevLLM],
    api_factory: Callable[[Env], Service],
    worker_pool: Callable[[Env], WorkerPool],
) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    server = redis_factory(False)
    # Tasks somewhat longer than the claim idle time, as LLM tasks often are: a stopping
    # worker is mid-task, and finishes within the grace most of what it began.
    llm = devllm_factory("--latency-ms", "750")
    env = campaign_env(
        server.url, llm.base_url, claim_idle_ms=CLAIM_IDLE_MS, shutdown_grace_s=GRACE_S
    )
    api = api_factory(env)
    pool = worker_pool(env)
    pool.start(WORKERS)
    r = server.client()
    accepted: dict[str, str] = {}  # task id -> its session

    def submit_all() -> None:
        client = Client(api.url, "acme")
        for n in range(TASKS):
            session = f"drain-{n}"
            # memory_set is the side effect; the session's history gets one turn per run.
            response = client.submit(f"remember that my item{n} is value{n}", session_id=session)
            if response.status_code == 202:
                accepted[response.json()["id"]] = session
            time.sleep(0.25)
        client.http.close()

    submitter = threading.Thread(target=submit_all, daemon=True)
    submitter.start()
    exit_seconds: list[float] = []
    # How long each entry of a stopping worker went without its claim refreshed: from the
    # claim idle time on, any other worker's XAUTOCLAIM takes it and runs it again.
    longest_idle_ms: Counter[str] = Counter()

    def watch(worker: Service, since_signal: float) -> None:
        if since_signal >= GRACE_S:
            # The grace is over: what is still pending was cancelled, and is released on
            # purpose (its idle time set to the claim idle time) for another worker to run.
            return
        consumer = f"{socket.gethostname()}-{worker.proc.pid}"
        entries: Any = r.xpending_range(STREAM, GROUP, "-", "+", 100, consumername=consumer)
        for entry in entries:
            idle = int(entry["time_since_delivered"])
            longest_idle_ms[entry["message_id"]] = max(longest_idle_ms[entry["message_id"]], idle)

    for _ in range(ROLLS):
        time.sleep(rng.uniform(0.8, 2.0))
        # A rolling update: the new pod first, then the old one is told to stop.
        pool.start(1)
        exit_seconds.append(pool.terminate(rng.randrange(len(pool.live) - 1), watch))
    submitter.join(timeout=120)
    wait_until(
        lambda: final_count(r, list(accepted)) == len(accepted) and pending(r) == 0,
        timeout=90,
        what="every task final",
    )

    found = records(r, list(accepted))
    starts = pool.event_counts("task started")
    cut_short = pool.event_counts("task cut short by the end of the grace; released for a retry")
    duplicates = pool.event_counts("task already had a final result; duplicate delivery ignored")
    # A run the grace cut short is followed by another one by design; any other second
    # run means an entry was taken from a worker still running it.
    run_twice = [t for t in accepted if starts[t] > 1 + cut_short[t] or duplicates[t]]
    turns = {t: r.llen(f"agent:session:acme:{session}") // 2 for t, session in accepted.items()}
    repeated_side_effects = [t for t in accepted if turns[t] > 1 and not cut_short[t]]
    llm_calls = sum(llm.requests().values())
    # Entries a stopping worker read as the signal came, or cut short at the end of the
    # grace, it hands back on purpose, claimable at once; it runs none of them.
    released = {
        entry
        for event in pool.events()
        if "released" in event["event"]
        for entry in event.get("entries", [])
    }
    exposed = [
        e for e, idle in longest_idle_ms.items() if idle >= CLAIM_IDLE_MS and e not in released
    ]
    statuses = Counter(fields.get("status") for fields in found.values())
    record(
        "rolling-restarts",
        tried={
            "tasks": TASKS,
            "workers": WORKERS,
            "SIGTERMs": ROLLS,
            "grace s": GRACE_S,
            "claim idle s": CLAIM_IDLE_MS / 1000,
        },
        lost={
            "tasks run twice": len(run_twice),
            "side effects repeated": len(repeated_side_effects),
            "not final": len(accepted) - sum(statuses[s] for s in FINAL),
            "stops over the grace": sum(1 for s in exit_seconds if s > GRACE_S + 3),
            "entries left claimable while draining": len(exposed),
        },
        figures={
            "accepted": len(accepted),
            "completed": statuses["completed"],
            "cut short by the grace": sum(cut_short.values()),
            "LLM calls": llm_calls,
            "LLM calls for one run each": LLM_CALLS_PER_TASK * len(accepted),
            "slowest stop s": round(max(exit_seconds), 2),
            "entries watched while draining": len(longest_idle_ms),
            "released unstarted or cut short": len(released),
            "longest idle while draining ms": max(
                (idle for e, idle in longest_idle_ms.items() if e not in released), default=0
            ),
        },
        seconds=time.monotonic() - began,
    )
    r.close()

    assert len(accepted) == TASKS
    assert statuses["completed"] == TASKS
    assert exposed == []
    assert run_twice == []
    assert repeated_side_effects == []
    assert max(exit_seconds) <= GRACE_S + 3
    if not cut_short:
        assert llm_calls == LLM_CALLS_PER_TASK * TASKS
