"""The processes under test: redis-server, the dev LLM, the API and its workers on
127.0.0.1, and what /proc says of them."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from agent_app.auth import hash_key
from agent_app.loopback import free_port, redis_server_command, stop, wait_http
from benchmarks.app_load.plan import (
    AGENT_APP,
    API_KEY,
    LLM_CONCURRENCY,
    LLM_LATENCY_MS,
    REDIS_PASSWORD,
    TENANT,
    WORKER_CONCURRENCY,
)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime (fields 14 and 15 of proc(5), counted here after the command name).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    """redis-server, devllm, the API and workers, each a process of its own."""

    workdir: Path
    # AGENT_ADMISSION_* of the API (bounded admission, agent_app/admission.py).
    admission: dict[str, str] = field(default_factory=dict)
    redis_port: int = 0
    devllm_url: str = ""
    api_url: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as out:
            return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603

    def start(self) -> None:
        self.redis_port = free_port()
        self.procs["redis"] = self._spawn(
            "redis",
            redis_server_command(self.redis_port, REDIS_PASSWORD, self.workdir),
            dict(os.environ),
        )
        port = free_port()
        self.devllm_url = f"http://127.0.0.1:{port}"
        self.procs["devllm"] = self._spawn(
            "devllm",
            [
                AGENT_APP,
                "devllm",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--latency-ms",
                str(LLM_LATENCY_MS),
            ],
            dict(os.environ),
        )
        wait_http(f"{self.devllm_url}/health", self.procs["devllm"])
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.procs["api"] = self._spawn("api", [AGENT_APP, "serve"], self._env(port))
        wait_http(f"{self.api_url}/health", self.procs["api"])

    def _env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
        env.update(
            {
                "AGENT_HOST": "127.0.0.1",
                "AGENT_PORT": str(port),
                "AGENT_WORKER_PORT": str(port),
                # The API's private metrics port; unused by the load, but it must be free.
                "AGENT_METRICS_PORT": str(free_port()),
                "AGENT_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "AGENT_REDIS_PASSWORD": REDIS_PASSWORD,
                "AGENT_LLM_BASE_URL": f"{self.devllm_url}/v1",
                "AGENT_LLM_API_KEY": "dev-llm-key",
                "AGENT_API_KEYS_SHA256": f"{TENANT}={hash_key(API_KEY)}",
                "AGENT_WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
                "AGENT_LLM_MAX_CONCURRENCY": str(LLM_CONCURRENCY),
                # Hundreds of thousands of tasks must not reach the cost-limiting ratio,
                # which would change the path measured (one task at a time).
                "AGENT_MONTHLY_BUDGET_USD": "1000000000",
                **self.admission,
            }
        )
        return env

    def set_workers(self, count: int) -> None:
        while len(self.workers) > count:
            stop(self.workers.pop(), grace_s=30)
        while len(self.workers) < count:
            port = free_port()
            proc = self._spawn(
                f"worker-{len(self.workers)}", [AGENT_APP, "worker"], self._env(port)
            )
            wait_http(f"http://127.0.0.1:{port}/health", proc)
            self.workers.append(proc)

    def redis(self) -> Redis:
        return Redis(port=self.redis_port, password=REDIS_PASSWORD, decode_responses=True)

    def rss(self) -> dict[str, float]:
        found = {"api": rss_mib(self.procs["api"].pid)}
        for index, proc in enumerate(self.workers):
            found[f"worker {index + 1}"] = rss_mib(proc.pid)
        return found

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each role (workers summed): unlike latency, CPU per
        task hardly changes when other work shares the machine."""
        used = {role: cpu_seconds(self.procs[role].pid) for role in ("api", "redis", "devllm")}
        used["workers"] = sum(cpu_seconds(proc.pid) for proc in self.workers)
        return used

    def stop(self) -> None:
        for proc in self.workers:
            stop(proc, grace_s=30)
        self.workers.clear()
        for proc in reversed(self.procs.values()):
            stop(proc, grace_s=30)


@contextmanager
def running_stack(
    workdir: Path | None = None, admission: dict[str, str] | None = None
) -> Iterator[Stack]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="app-load-") as tmp:
        stack = Stack(workdir or Path(tmp), admission or {})
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()
