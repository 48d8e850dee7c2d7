"""LLM faults: 30 % errors, then timeouts, then a full outage, then health again. Retries
and the breaker keep the API responsive; tasks end with an error that names the cause and
never hang; once the outage is over the breaker closes again and new tasks succeed."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from app.appkit import Client, Env, Service, metric_samples, metric_value, wait_until

from faults.campaign import record
from faults.flaky_llm import FlakyLLM, Mode
from faults.stack import FINAL, RedisProcess, WorkerPool, campaign_env, log_events

SEED = 7
ERROR_RATE = 0.3
WORKERS = 2
TASKS = {"errors": 60, "timeouts": 16, "outage": 16, "healthy": 16}
# A task that did not complete must name the model's failure: directly, or as the last
# failure of the circuit that refused it ("circuit ... is open (last failure: ...)").
CAUSE = re.compile(r"HTTP 50[03]|APITimeoutError")
# What each phase injects, which its failed tasks must name at least once.
INJECTED = {"errors": "HTTP 500", "timeouts": "APITimeoutError", "outage": "HTTP 503"}
FINAL_WITHIN_S = 120

pytestmark = [pytest.mark.redis, pytest.mark.timeout(300)]


@pytest.fixture
def flaky_llm() -> Iterator[FlakyLLM]:
    llm = FlakyLLM(ERROR_RATE, SEED)
    llm.start()
    yield llm
    llm.stop()


class Prober:
    """Asks the API and every worker for /health and submits a cheap task all along, from
    its own thread: a worker stuck behind a hung model would fail its liveness probe."""

    def __init__(self, client: Client, workers: list[str]) -> None:
        self.client = client
        self.workers = workers
        self.stop = threading.Event()
        self.answers: list[tuple[str, int, float]] = []
        self.task_ids: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _ask(self, kind: str, send: Callable[..., httpx.Response], *args: Any) -> None:
        started = time.monotonic()
        try:
            response = send(*args)
            status = response.status_code
        except httpx.HTTPError:
            status = 0
        self.answers.append((kind, status, time.monotonic() - started))
        if kind == "submit" and status == 202:
            self.task_ids.append(response.json()["id"])

    def _run(self) -> None:
        n = 0
        while not self.stop.wait(0.25):
            self._ask("health", self.client.http.get, "/health")
            for url in self.workers:
                self._ask("worker health", self.client.http.get, f"{url}/health")
            if n % 8 == 0:
                self._ask("submit", self.client.submit, f"compute {n} - 5000")
            n += 1

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self._thread.join(timeout=60)


def test_llm_errors_timeouts_and_outage(
    flaky_llm: FlakyLLM,
    redis_factory: Callable[[bool], RedisProcess],
    api_factory: Callable[[Env], Service],
    worker_pool: Callable[[Env], WorkerPool],
) -> None:
    began = time.monotonic()
    server = redis_factory(False)
    env = campaign_env(
        server.url,
        flaky_llm.base_url,
        llm_timeout_s=2,
        llm_retry_attempts=3,
        llm_retry_wait_initial_s=0.05,
        llm_retry_wait_max_s=0.2,
        breaker_failure_threshold=5,
        breaker_reset_s=1,
        # A failed attempt is retried after the open circuit would let a probe through, as
        # with the defaults (60 s and 30 s); retrying sooner would only meet the open circuit.
        claim_idle_ms=1500,
        shutdown_grace_s=1,
        max_attempts=3,
    )
    api = api_factory(env)
    pool = worker_pool(env)
    pool.start(WORKERS)
    acme = Client(api.url, "acme")
    phase_of: dict[str, str] = {}
    submit_statuses: Counter[int] = Counter()
    bodies: dict[str, dict[str, Any]] = {}
    seconds_to_final: dict[str, float] = {}
    selected: set[str] = set()

    def run_phase(mode: Mode, label: str, count: int) -> None:
        flaky_llm.mode = mode
        submitted: dict[str, float] = {}
        for n in range(count):
            response = acme.submit(f"compute {len(phase_of) + n} * 3 + 1")
            submit_statuses[response.status_code] += 1
            if response.status_code == 202:
                submitted[response.json()["id"]] = time.monotonic()
                selected.add(response.json()["selection"]["model"])
        for task_id in submitted:
            phase_of[task_id] = label
        waiting = set(submitted)

        def all_final() -> bool:
            for task_id in list(waiting):
                body = acme.task(task_id)
                if body["status"] in FINAL:
                    bodies[task_id] = body
                    seconds_to_final[task_id] = time.monotonic() - submitted[task_id]
                    waiting.discard(task_id)
            return not waiting

        # A task still not final by then is reported and asserted below as hung.
        with contextlib.suppress(TimeoutError):
            wait_until(all_final, timeout=FINAL_WITHIN_S, interval=0.2, what=f"{label} final")

    def circuits_closed() -> bool:
        # The circuits of the models tasks are selected for are closed again, and none is
        # left open. A model that tasks only fell back to during the outage has no traffic
        # to probe it afterwards: half-open (1), it admits the next call as its probe.
        return all(
            metric_value(w.metrics_url, "agent_llm_circuit_state", model=model) == 0
            for w in pool.live
            for model in selected
        ) and all(
            value < 2
            for w in pool.live
            for name, _, value in metric_samples(w.metrics_url)
            if name == "agent_llm_circuit_state"
        )

    with Prober(Client(api.url, "globex"), [w.url for w in pool.live]) as prober:
        run_phase("errors", "errors", TASKS["errors"])
        run_phase("timeouts", "timeouts", TASKS["timeouts"])
        opened = [metric_value(w.metrics_url, "agent_llm_circuit_state") for w in pool.live]
        run_phase("outage", "outage", TASKS["outage"])
        # After the outage the first tasks drive each worker's half-open probe; they may
        # still meet an open circuit, so only the tasks after recovery must all succeed.
        flaky_llm.mode = "healthy"
        warm_up = 0
        recovered_at = time.monotonic()
        while not circuits_closed() and time.monotonic() - recovered_at < 60:
            run_phase("healthy", "warm-up", 2)
            warm_up += 2
        recovery_s = time.monotonic() - recovered_at
        run_phase("healthy", "recovered", TASKS["healthy"])
    acme.http.close()

    by_phase: dict[str, Counter[str]] = {}
    for task_id, label in phase_of.items():
        status = bodies[task_id]["status"] if task_id in bodies else "hung"
        by_phase.setdefault(label, Counter())[status] += 1
    not_completed = [
        (phase_of[task_id], body.get("error") or "")
        for task_id, body in bodies.items()
        if body["status"] != "completed"
    ]
    unclear = [(label, error) for label, error in not_completed if not CAUSE.search(error)]
    named = {
        label: sum(1 for phase, error in not_completed if phase == label and cause in error)
        for label, cause in INJECTED.items()
    }
    hung = [task_id for task_id in phase_of if task_id not in bodies]
    causes: dict[str, Counter[str]] = {}
    for label, error in not_completed:
        found = CAUSE.search(error)
        cause = found.group(0) if found else "other"
        kind = f"circuit open after {cause}" if "circuit" in error else cause
        causes.setdefault(label, Counter())[kind] += 1
    health = Counter(status for kind, status, _ in prober.answers if kind == "health")
    worker_health = Counter(status for kind, status, _ in prober.answers if kind == "worker health")
    probe_submits = Counter(status for kind, status, _ in prober.answers if kind == "submit")
    transitions = [e["state"] for e in pool.events() if e.get("event") == "circuit state changed"]
    # Of the circuits of the models tasks are selected for (see circuits_closed).
    last_transitions = [
        [
            e["state"]
            for e in log_events(w)
            if e.get("event") == "circuit state changed" and e.get("model") in selected
        ][-2:]
        for w in pool.live
    ]
    max_final = {
        label: round(
            max((s for t, s in seconds_to_final.items() if phase_of[t] == label), default=0.0), 2
        )
        for label in by_phase
    }
    requests_in_errors = flaky_llm.count("errors")

    record(
        "llm-faults",
        tried={
            "tasks": len(phase_of),
            "LLM requests": sum(flaky_llm.outcomes.values()),
            "health probes": sum(health.values()) + sum(worker_health.values()),
        },
        lost={
            "hung tasks": len(hung),
            "unclear errors": len(unclear),
            "health or submit answers not 2xx": sum(
                n
                for s, n in (health + worker_health + probe_submits).items()
                if s not in (200, 202)
            )
            + sum(n for s, n in submit_statuses.items() if s != 202),
        },
        figures={
            "injected 500 share": round(
                flaky_llm.count("errors", "HTTP 500") / max(1, requests_in_errors), 3
            ),
            "outcomes by phase": {label: dict(c) for label, c in by_phase.items()},
            "max time to final s by phase": max_final,
            "last error of tasks not completed, by phase": {
                label: dict(c) for label, c in causes.items()
            },
            "circuit states (worker gauges) after timeouts": opened,
            "circuit transitions": dict(Counter(transitions)),
            "last transitions per worker": last_transitions,
            "warm-up tasks": warm_up,
            "breaker closed again after s": round(recovery_s, 2),
            "max health answer s": round(
                max((s for kind, _, s in prober.answers if kind.endswith("health")), default=0.0),
                2,
            ),
            "max submit answer s": round(
                max((s for kind, _, s in prober.answers if kind == "submit"), default=0.0), 2
            ),
        },
        seconds=time.monotonic() - began,
    )

    assert hung == []
    assert unclear == []
    # Each fault is named where it struck: the timeouts phase's failures say timeout, etc.
    assert named["timeouts"] >= 1
    assert named["outage"] >= 1
    assert set(submit_statuses) == {202}
    assert set(health) == {200}
    assert set(worker_health) == {200}
    assert set(probe_submits) == {202}
    # The faults bit: nothing got through a hung or absent model ...
    assert by_phase["timeouts"]["completed"] == 0
    assert by_phase["outage"]["completed"] == 0
    # ... retries absorbed most of the 30 % errors ...
    assert by_phase["errors"]["completed"] >= 0.8 * TASKS["errors"]
    # ... the breaker opened, probed and closed again, and then every new task succeeded.
    assert {"open", "half_open", "closed"} <= set(transitions)
    assert last_transitions == [["half_open", "closed"]] * WORKERS
    assert circuits_closed()
    assert by_phase["recovered"] == Counter(completed=TASKS["healthy"])
