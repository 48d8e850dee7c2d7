"""Redis restart: redis-server (AOF, fsync on every write) is SIGKILLed during load and
started again on the same port and directory. The API must answer 503, never 500, while
it is down and recover by itself; no accepted task may be lost."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from app.appkit import Client, DevLLM, Env, Service, wait_until

from faults.campaign import record
from faults.stack import (
    STREAM,
    RedisProcess,
    WorkerPool,
    campaign_env,
    final_count,
    pending,
    records,
)

WORKERS = 2
TENANTS = ("acme", "globex")
DOWN_S = 4.0

pytestmark = [pytest.mark.redis, pytest.mark.timeout(240)]


@dataclass
class Answer:
    at: float
    kind: str
    status: int  # 0: no HTTP answer at all
    seconds: float


@dataclass
class Load:
    """A client that keeps submitting tasks, each under its own Idempotency-Key and retried
    with that key after a 503 as a well-behaved client would, and reads one back each time.
    Every fourth submission waits for its result (`?wait=`); every fifth round also asks
    for /ready and /metrics."""

    client: Client
    offset: int
    # The API's private metrics port, where Prometheus scrapes it.
    metrics_url: str
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[Answer] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)

    def _call(
        self, kind: str, send: Callable[..., httpx.Response], *args: Any, **kwargs: Any
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = send(*args, **kwargs)
        except httpx.HTTPError:
            self.answers.append(Answer(started, kind, 0, time.monotonic() - started))
            return None
        self.answers.append(Answer(started, kind, response.status_code, time.monotonic() - started))
        return response

    def run(self) -> None:
        n = rounds = 0
        while not self.stop.is_set():
            rounds += 1
            if rounds % 5 == 0:
                # Probes and scraping must keep answering too: /ready says 503, /metrics 200.
                self._call("ready", self.client.http.get, "/ready")
                self._call("metrics", httpx.get, f"{self.metrics_url}/metrics", timeout=30)
            response = self._call(
                "submit",
                self.client.submit,
                f"compute {n} + {self.offset}",
                # Some wait for the result, so waiting requests meet the outage too.
                wait=2.0 if n % 4 == 0 else None,
                idempotency_key=f"restart-{n}",
            )
            if response is not None and response.status_code in (200, 202):
                task_id = response.json()["id"]
                if task_id not in self.accepted:
                    self.accepted.append(task_id)
                    self.accepted_at.append(time.monotonic())
                n += 1
            if self.accepted:
                self._call("read", self.client.http.get, f"/v1/tasks/{self.accepted[-1]}")
            time.sleep(0.02)

    def count(self, status: int, since: float = 0.0) -> int:
        return sum(1 for a in self.answers if a.status == status and a.at >= since)


def test_redis_restart_loses_no_accepted_task(
    redis_factory: Callable[[bool], RedisProcess],
    devllm_factory: Callable[..., DevLLM],
    api_factory: Callable[[Env], Service],
    worker_pool: Callable[[Env], WorkerPool],
) -> None:
    began = time.monotonic()
    server = redis_factory(True)
    llm = devllm_factory("--latency-ms", "200")
    env = campaign_env(server.url, llm.base_url)
    api = api_factory(env)
    pool = worker_pool(env)
    pool.start(WORKERS)
    processes = [api.proc, *(w.proc for w in pool.live)]

    loads = [
        Load(Client(api.url, tenant), 1000 * (n + 1), api.metrics_url)
        for n, tenant in enumerate(TENANTS)
    ]
    loaders = [threading.Thread(target=load.run, daemon=True) for load in loads]
    for loader in loaders:
        loader.start()

    def accepted(since: float = 0.0) -> int:
        return sum(1 for load in loads for at in load.accepted_at if at >= since)

    def answered(status: int, since: float) -> int:
        return sum(load.count(status, since) for load in loads)

    wait_until(lambda: accepted() >= 40, timeout=60, what="load under way")
    r = server.client()
    accepted_before = [task_id for load in loads for task_id in load.accepted]
    unfinished_at_kill = len(accepted_before) - final_count(r, accepted_before)
    r.close()
    server.kill()
    killed_at = time.monotonic()
    time.sleep(DOWN_S)
    # Waits that time out are not errors here: the run is recorded, then the asserts fail.
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: answered(503, killed_at) >= 3, timeout=60, what="503 while down")
    server.start()
    back_at = time.monotonic()
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: accepted(back_at) >= 40, timeout=90, what="API accepting again")
    accepted_after = accepted(back_at)
    for load in loads:
        load.stop.set()
    for loader in loaders:
        loader.join(timeout=60)
    for load in loads:
        load.client.http.close()
    answers = [answer for load in loads for answer in load.answers]

    r = server.client()
    ids = [task_id for load in loads for task_id in load.accepted]
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: final_count(r, ids) == len(ids), timeout=90, what="all tasks final")
        wait_until(lambda: pending(r) == 0 and r.xlen(STREAM) == 0, timeout=60, what="drained")
    found = records(r, ids)
    r.close()

    statuses = Counter(fields.get("status", "missing") for fields in found.values())
    lost_ids = [task_id for task_id, fields in found.items() if "finished_at" not in fields]
    statuses_seen = Counter(a.status for a in answers)
    unexpected = {status: n for status, n in statuses_seen.items() if status not in (200, 202, 503)}
    first_ok_after = min(
        (a.at for a in answers if a.at >= back_at and a.status in (200, 202)),
        default=back_at,
    )
    to_final = [
        float(fields["finished_at"]) - float(fields["created_at"])
        for fields in found.values()
        if "finished_at" in fields
    ]
    survivors = sum(1 for proc in processes if proc.poll() is None)

    record(
        "redis-restart",
        tried={
            "accepted tasks": len(ids),
            "requests": len(answers),
            "redis kills": 1,
            "seconds down": round(back_at - killed_at, 1),
        },
        lost={
            "tasks lost": len(lost_ids),
            "answers other than 2xx/503": sum(unexpected.values()),
        },
        figures={
            "accepted before the kill": len(accepted_before),
            "accepted after the restart": accepted_after,
            "unfinished at the kill": unfinished_at_kill,
            "503 answers": dict(Counter(a.kind for a in answers if a.status == 503)),
            "unexpected answers": {str(k): v for k, v in unexpected.items()},
            "max 503 answer s": round(
                max((a.seconds for a in answers if a.status == 503), default=0.0), 2
            ),
            "accepting again after restart s": round(first_ok_after - back_at, 2),
            "completed": statuses["completed"],
            "dead-lettered": statuses["dead_lettered"],
            "failed": statuses["failed"],
            "max time to final s": round(max(to_final, default=0.0), 2),
            "API and workers never restarted": survivors == len(processes),
        },
        seconds=time.monotonic() - began,
    )

    assert unexpected == {}
    assert {a.status for a in answers if a.kind == "metrics"} == {200}
    assert statuses_seen[503] >= 3
    assert survivors == len(processes)
    assert accepted_after >= 40
    assert lost_ids == []
    assert set(statuses) <= {"completed", "dead_lettered"}
    assert statuses["completed"] >= 1


def test_submission_refused_half_way_is_not_replayed_as_accepted(
    redis_factory: Callable[[bool], RedisProcess],
    devllm_factory: Callable[..., DevLLM],
    api_factory: Callable[[Env], Service],
    worker_pool: Callable[[Env], WorkerPool],
) -> None:
    """Redis failing between the API's writes of one submission, made deterministic: XADD is
    refused (an ACL rule) while every other write works. The client gets 503 and retries
    with its Idempotency-Key; the task it is then given must really run."""
    server = redis_factory(False)
    llm = devllm_factory()
    env = campaign_env(server.url, llm.base_url)
    api = api_factory(env)
    worker_pool(env).start(1)
    r = server.client()
    acme = Client(api.url, "acme")
    try:
        r.acl_setuser("default", enabled=True, commands=["-xadd"])
        refused = acme.submit("compute 6 * 7", idempotency_key="half-way")
        r.acl_setuser("default", enabled=True, commands=["+xadd"])
        retried = acme.submit("compute 6 * 7", idempotency_key="half-way")
        body = acme.wait_final(retried.json()["id"], timeout=30) if retried.is_success else {}
    finally:
        acme.http.close()
        r.close()
    assert refused.status_code == 503
    assert retried.status_code in (200, 202)
    assert body["status"] == "completed"
    assert "6 * 7 = 42" in body["result"]
