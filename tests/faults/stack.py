"""The processes of one fault-campaign run: a redis-server that can be killed and started
again on the same port and directory, and a pool of workers that can be killed and
replaced. The API, devllm and clients come from the app tests' helpers."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from app.appkit import REDIS_PASSWORD, TENANT_KEYS, Env, Service, _pings, start_service, wait_until

from agent_app.auth import hash_key
from agent_app.loopback import redis_server_command

STREAM = "agent:tasks"
GROUP = "agent-workers"
DEAD = "agent:tasks:dead"
FINAL = frozenset({"completed", "failed", "dead_lettered"})


@dataclass
class RedisProcess:
    """One redis-server, stoppable and restartable with the same port, directory and data."""

    port: int
    workdir: Path
    appendonly: bool
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, password=REDIS_PASSWORD, decode_responses=True, socket_timeout=10
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            redis_server_command(
                self.port, REDIS_PASSWORD, self.workdir, appendonly=self.appendonly
            ),
            stdout=subprocess.DEVNULL,
        )
        client = self.client()
        try:
            wait_until(lambda: _pings(client), timeout=60, what="redis-server")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything that was not already on disk."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)


def campaign_env(redis_url: str, llm_base_url: str, **overrides: Any) -> Env:
    keys = ",".join(f"{tenant}={hash_key(key)}" for tenant, key in TENANT_KEYS.items())
    defaults: dict[str, Any] = {
        # Generous: the machine is shared, and a slow answer must not look like a fault.
        "llm_timeout_s": 15,
        "max_wait_s": 60,
        "claim_idle_ms": 2000,
        "max_attempts": 3,
        "shutdown_grace_s": 1.5,
        # Quick retries, and a breaker that stays closed: the LLM is not what these runs
        # break (the LLM campaign sets its own).
        "llm_retry_attempts": 2,
        "llm_retry_wait_initial_s": 0.05,
        "llm_retry_wait_max_s": 0.2,
        "breaker_failure_threshold": 50,
        "breaker_reset_s": 1,
        # The campaign counts what is lost of what was accepted, and its submitters send
        # as fast as they can: admission is kept from refusing (its limits are tested in
        # tests/app/test_app_admission.py), though every admission and final write still
        # runs its counting.
        "admission_min_tasks": 100_000,
    }
    return Env().with_(
        host="127.0.0.1",
        redis_url=redis_url,
        redis_password=REDIS_PASSWORD,
        llm_base_url=llm_base_url,
        llm_api_key="dev-llm-key",
        api_keys_sha256=keys,
        release_version="campaign",
        log_level="info",
        **{**defaults, **overrides},
    )


@dataclass
class WorkerPool:
    """Workers of one run; a killed worker is replaced by a new process (a new consumer)."""

    env: Env
    logdir: Path
    live: list[Service] = field(default_factory=list)
    dead: list[Service] = field(default_factory=list)

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            self.live.append(start_service(self.env, "worker", self.logdir))

    def kill(self, index: int) -> None:
        service = self.live.pop(index)
        service.proc.send_signal(signal.SIGKILL)
        service.proc.wait(timeout=30)
        self.dead.append(service)

    def terminate(
        self, index: int, watch: Callable[[Service, float], None], timeout: float = 60
    ) -> float:
        """SIGTERM, as Kubernetes stops a pod, then `watch(worker, seconds since the
        signal)` every 10 ms until it exits: the seconds it took."""
        service = self.live.pop(index)
        signalled = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        while service.proc.poll() is None:
            if time.monotonic() - signalled > timeout:
                raise TimeoutError(f"worker {service.proc.pid} still running after SIGTERM")
            watch(service, time.monotonic() - signalled)
            time.sleep(0.01)
        self.dead.append(service)
        return time.monotonic() - signalled

    def stop_all(self) -> None:
        for service in self.live:
            if service.proc.poll() is None:
                service.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for service in self.live:
            try:
                service.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.proc.kill()
                service.proc.wait()
        self.dead.extend(self.live)
        self.live = []

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line of every worker, live or dead, in no particular order."""
        return [event for service in [*self.live, *self.dead] for event in log_events(service)]

    def event_counts(self, event: str) -> Counter[str]:
        """How many times each task id logged `event`, across all workers."""
        return Counter(str(e.get("task_id")) for e in self.events() if e.get("event") == event)


def log_events(service: Service) -> list[dict[str, Any]]:
    """The JSON log lines of one process, in order."""
    found: list[dict[str, Any]] = []
    for line in service.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by SIGKILL
    return found


def records(client: redis.Redis, task_ids: list[str]) -> dict[str, dict[str, str]]:
    with client.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.hgetall(f"agent:task:{task_id}")
        found: list[dict[str, str]] = pipe.execute()
    return dict(zip(task_ids, found, strict=True))


def final_count(client: redis.Redis, task_ids: list[str]) -> int:
    with client.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.hget(f"agent:task:{task_id}", "finished_at")
        return sum(1 for value in pipe.execute() if value is not None)


def dead_letter_counts(client: redis.Redis) -> Counter[str]:
    entries: Any = client.xrange(DEAD)
    return Counter(fields["task_id"] for _, fields in entries)


def pending(client: redis.Redis) -> int:
    try:
        info: Any = client.xpending(STREAM, GROUP)
    except redis.ResponseError:
        return 0
    return int(info["pending"])
