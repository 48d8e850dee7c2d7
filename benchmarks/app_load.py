"""Load benchmark of the agent app: one API process and N workers on a real redis-server,
with the dev LLM server answering after a fixed 50 ms.

    python -m benchmarks.app_load [--quick] [--output FILE]

The load generator is open loop (requests start on a fixed schedule whatever the answers
do) and times each request from its scheduled start, so a slow answer cannot delay the
next request and hide itself (no coordinated omission). Everything runs on 127.0.0.1.
About 14 minutes with the defaults, including the 5-minute soak; `--quick` takes about
two and skips the soak's length. Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from agent_app.agent import _PLAN_PROMPT, _SYSTEM_PROMPTS
from agent_app.auth import hash_key
from agent_app.tools import default_registry
from benchmarks.stats import Series

AGENT_APP = str(Path(sys.executable).with_name("agent-app"))
LLM_LATENCY_MS = 50
TENANT, API_KEY = "bench", "bench-api-key"
REDIS_PASSWORD = "bench-redis-password"  # noqa: S105 - a throwaway local server
# Per process: enough tasks and LLM calls in flight for 400 tasks/s of two 50 ms calls
# each (the defaults, 4 and 8, cap a worker at about 40 tasks/s).
WORKER_CONCURRENCY = 64
LLM_CONCURRENCY = 64
MAIN_WORKERS = 2
# An answer that has not come within this long is an error; it also bounds each step.
WAIT_S = 10.0
TARGET_RATE = 100.0
SOAK_RATE = 50.0

# Targets of the issue, in seconds.
OVERHEAD_TARGETS = {50: 0.010, 95: 0.025, 99: 0.050}
CACHE_HIT_P50_TARGET = 0.003
CAPACITY_TARGET_RPS = 300.0
CAPACITY_P99_LIMIT = 0.100

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    reps: int
    phase_s: float
    step_s: float
    cache_rate: float
    capacity_steps: tuple[float, ...]
    capacity_below: tuple[float, ...]  # tried, downwards, only when the target rate fails
    queue_tasks: int
    queue_workers: tuple[int, ...]
    soak_s: float
    soak_samples: int


FULL = Plan(
    reps=3,
    phase_s=15,
    step_s=10,
    cache_rate=20,
    capacity_steps=(150, 200, 300, 400, 500),
    capacity_below=(50, 25),
    queue_tasks=600,
    queue_workers=(1, 2, 4),
    soak_s=300,
    soak_samples=6,
)
QUICK = Plan(
    reps=1,
    phase_s=5,
    step_s=4,
    cache_rate=20,
    capacity_steps=(150, 200),
    capacity_below=(50,),
    queue_tasks=150,
    queue_workers=(1, 2, 4),
    soak_s=20,
    soak_samples=3,
)


# ---------------------------------------------------------------------------------------
# Processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up within {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
    redis_port: int = 0
    devllm_url: str = ""
    api_url: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as out:
            return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; run scripts/bootstrap")
        self.redis_port = _free_port()
        self.procs["redis"] = self._spawn(
            "redis",
            [
                binary,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                REDIS_PASSWORD,
                "--dir",
                str(self.workdir),
            ],
            dict(os.environ),
        )
        port = _free_port()
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
        _wait_http(f"{self.devllm_url}/health", self.procs["devllm"])
        port = _free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.procs["api"] = self._spawn("api", [AGENT_APP, "serve"], self._env(port))
        _wait_http(f"{self.api_url}/health", self.procs["api"])

    def _env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
        env.update(
            {
                "AGENT_HOST": "127.0.0.1",
                "AGENT_PORT": str(port),
                "AGENT_WORKER_PORT": str(port),
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
            }
        )
        return env

    def set_workers(self, count: int) -> None:
        while len(self.workers) > count:
            _stop(self.workers.pop())
        while len(self.workers) < count:
            port = _free_port()
            proc = self._spawn(
                f"worker-{len(self.workers)}", [AGENT_APP, "worker"], self._env(port)
            )
            _wait_http(f"http://127.0.0.1:{port}/health", proc)
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
            _stop(proc)
        self.workers.clear()
        for proc in reversed(self.procs.values()):
            _stop(proc)


@contextmanager
def running_stack(workdir: Path | None = None) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="app-load-") as tmp:
        stack = Stack(workdir or Path(tmp))
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


# ---------------------------------------------------------------------------------------
# Load generation


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest rank: a latency some request really had."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(pct / 100 * len(sorted_values) + 0.4999999))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Phase:
    rate: float
    sent: int
    ok: int
    errors: Counter[str]
    latencies: list[float]  # successful requests only, sorted, seconds
    elapsed_s: float
    # How late the generator started each request against the schedule, sorted: its own
    # CPU starvation, which the latencies include.
    start_lags: list[float]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def achieved_rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def p(self, pct: float) -> float:
        return percentile(self.latencies, pct)


Request = Callable[[int], Awaitable[str | None]]  # None when fine, else an error kind


async def open_loop(request: Request, rate: float, duration_s: float) -> Phase:
    loop = asyncio.get_running_loop()
    count = max(1, round(rate * duration_s))
    start = loop.time() + 0.05
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    start_lags: list[float] = []
    last_done = start

    async def one(index: int, scheduled: float) -> None:
        nonlocal last_done
        start_lags.append(loop.time() - scheduled)
        try:
            error = await request(index)
        except (httpx.HTTPError, OSError) as exc:
            error = type(exc).__name__
        done = loop.time()
        last_done = max(last_done, done)
        if error is None:
            latencies.append(done - scheduled)
        else:
            errors[error] += 1

    tasks = []
    for index in range(count):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    await asyncio.gather(*tasks)
    latencies.sort()
    start_lags.sort()
    return Phase(rate, count, len(latencies), errors, latencies, last_done - start, start_lags)


def _client() -> httpx.AsyncClient:
    # Idle connections are dropped before uvicorn's 5 s keep-alive closes them: reusing one
    # as the server closes it fails the request with a ReadError that is not the app's.
    limits = httpx.Limits(
        max_connections=2000, max_keepalive_connections=2000, keepalive_expiry=2.0
    )
    return httpx.AsyncClient(limits=limits, timeout=WAIT_S + 5)


class Driver:
    """The two request paths measured: a task through the app, and the same LLM calls
    sent straight to devllm."""

    def __init__(self, stack: Stack, http: httpx.AsyncClient) -> None:
        self.stack = stack
        self.http = http
        self.run_id = uuid.uuid4().hex[:8]
        self.tools = default_registry().schemas()

    def unique_task(self, index: int) -> str:
        # Words and one number: devllm calls no tool for it, so a task is exactly two LLM
        # calls (plan and answer), and the run id keeps every task a cache miss.
        return f"Summarise note {self.run_id} {index}"

    async def submit(self, task: str) -> httpx.Response:
        return await self.http.post(
            f"{self.stack.api_url}/v1/tasks",
            params={"wait": WAIT_S},
            json={"task": task},
            headers={"X-API-Key": API_KEY},
        )

    def app_request(self, prefix: str, expect_cached: bool = False) -> Request:
        async def request(index: int) -> str | None:
            task = f"Recall cached note {self.run_id}" if expect_cached else ""
            response = await self.submit(task or f"{prefix} {self.unique_task(index)}")
            if response.status_code != 200:
                return f"HTTP {response.status_code}"
            body = response.json()
            if body["status"] != "completed":
                return str(body["status"])
            if expect_cached and body["tokens"]["cached_calls"] != 2:
                return "cache miss"
            return None

        return request

    def baseline_request(self, prefix: str) -> Request:
        """The two chat completions the agent makes for such a task, back to back."""

        async def request(index: int) -> str | None:
            task = f"{prefix} {self.unique_task(index)}"
            calls: list[dict[str, Any]] = [
                {
                    "model": "medium",
                    "messages": [
                        {"role": "system", "content": _PLAN_PROMPT},
                        {"role": "user", "content": task},
                    ],
                },
                {
                    "model": "medium",
                    "messages": [
                        {"role": "system", "content": _SYSTEM_PROMPTS["control"]},
                        {"role": "user", "content": task},
                    ],
                    "tools": self.tools,
                },
            ]
            for body in calls:
                response = await self.http.post(
                    f"{self.stack.devllm_url}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": "Bearer dev-llm-key"},
                )
                if response.status_code != 200:
                    return f"HTTP {response.status_code}"
            return None

        return request

    async def drained(self, timeout_s: float = 60) -> None:
        """Waits until no task is queued or running, so phases do not overlap."""
        redis = self.stack.redis()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and await _queue_depth(redis) > 0:
                await asyncio.sleep(0.05)
        finally:
            await redis.aclose()


async def _queue_depth(redis: Redis) -> int:
    try:
        groups: list[dict[str, Any]] = await redis.xinfo_groups("agent:tasks")
    except Exception:
        return 0
    depth = 0
    for group in groups:
        lag = group.get("lag")
        if lag is None:
            lag = max(0, await redis.xlen("agent:tasks") - int(group["pending"]))
        depth += int(group["pending"]) + int(lag)
    return depth


# ---------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Pair:
    """One rate measured through the app and straight to devllm, in the same run."""

    app: Phase
    base: Phase
    app_cpu: dict[str, float]  # CPU seconds per role over the app phase and its drain
    base_cpu: dict[str, float]

    def cpu_ms_per_request(self, role: str, baseline: bool = False) -> float:
        phase, used = (self.base, self.base_cpu) if baseline else (self.app, self.app_cpu)
        return used[role] / phase.sent * 1000

    def overhead(self, pct: float) -> float:
        return self.app.p(pct) - self.base.p(pct)


async def measure_pair(driver: Driver, rate: float, duration_s: float, tag: str) -> Pair:
    stack = driver.stack
    before = stack.cpu()
    base = await open_loop(driver.baseline_request(f"b{tag}"), rate, duration_s)
    middle = stack.cpu()
    app = await open_loop(driver.app_request(f"a{tag}"), rate, duration_s)
    await driver.drained()
    return Pair(app, base, _used(middle, stack.cpu()), _used(before, middle))


def _used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before[role] for role in after}


async def warm_up(driver: Driver) -> None:
    await open_loop(driver.baseline_request("warm"), 50, 2)
    await open_loop(driver.app_request("warm"), 50, 3)
    await driver.drained()


@dataclass
class Capacity:
    steps: list[Pair]

    @property
    def capacity_rps(self) -> float:
        """The highest rate below the lowest one that failed; 0 when every step failed."""
        passed = 0.0
        for pair in sorted(self.steps, key=lambda pair: pair.app.rate):
            if not _passes(pair):
                break
            passed = pair.app.rate
        return passed


def _passes(pair: Pair) -> bool:
    return not pair.app.error_count and pair.overhead(99) <= CAPACITY_P99_LIMIT


async def capacity(driver: Driver, at_target: Pair, plan: Plan, rep: int) -> Capacity:
    steps = [at_target]
    upwards = _passes(at_target)
    for rate in plan.capacity_steps if upwards else plan.capacity_below:
        pair = await measure_pair(driver, rate, plan.step_s, f"c{rep}-{rate:g}")
        steps.append(pair)
        if _passes(pair) != upwards:
            break
    return Capacity(steps)


async def cache_hits(driver: Driver, plan: Plan) -> Phase:
    response = await driver.submit(f"Recall cached note {driver.run_id}")
    response.raise_for_status()
    phase = await open_loop(
        driver.app_request("", expect_cached=True), plan.cache_rate, plan.phase_s
    )
    await driver.drained()
    return phase


async def queue_throughput(driver: Driver, tasks: int, tag: str) -> tuple[float, int]:
    """Accepted tasks per second from the first submission until the stream is empty,
    and the submissions refused. Submitting (without waiting) is far quicker than
    processing, so the workers set the pace."""
    redis = driver.stack.redis()
    semaphore = asyncio.Semaphore(64)

    async def submit(index: int) -> bool:
        async with semaphore:
            try:
                response = await driver.http.post(
                    f"{driver.stack.api_url}/v1/tasks",
                    json={"task": f"q{tag} {driver.unique_task(index)}"},
                    headers={"X-API-Key": API_KEY},
                )
            except httpx.HTTPError:
                return False
            return response.status_code == 202

    try:
        started = time.perf_counter()
        accepted = sum(await asyncio.gather(*(submit(i) for i in range(tasks))))
        while await _queue_depth(redis) > 0:
            await asyncio.sleep(0.01)
        return accepted / (time.perf_counter() - started), tasks - accepted
    finally:
        await redis.aclose()


@dataclass
class Soak:
    rate: float
    duration_s: float
    phase: Phase
    samples: list[tuple[float, dict[str, float]]]  # (seconds since start, name -> MiB)


async def soak(driver: Driver, plan: Plan) -> Soak:
    samples: list[tuple[float, dict[str, float]]] = []
    started = time.monotonic()

    async def sample() -> None:
        interval = plan.soak_s / plan.soak_samples
        for _ in range(plan.soak_samples):
            samples.append((time.monotonic() - started, driver.stack.rss()))
            await asyncio.sleep(interval)

    sampler = asyncio.create_task(sample())
    phase = await open_loop(driver.app_request("soak"), SOAK_RATE, plan.soak_s)
    await sampler
    await driver.drained()
    samples.append((time.monotonic() - started, driver.stack.rss()))
    return Soak(SOAK_RATE, plan.soak_s, phase, samples)


@dataclass
class Results:
    plan: Plan
    at_target: list[Pair] = field(default_factory=list)
    cache: list[Phase] = field(default_factory=list)
    capacity: list[Capacity] = field(default_factory=list)
    queue: dict[int, Series] = field(default_factory=dict)
    queue_refused: Counter[int] = field(default_factory=Counter)
    soak: Soak | None = None


async def measure(stack: Stack, plan: Plan, progress: Progress) -> Results:
    results = Results(plan)
    async with _client() as http:
        driver = Driver(stack, http)
        stack.set_workers(MAIN_WORKERS)
        progress("app load: warming up")
        await warm_up(driver)
        for rep in range(plan.reps):
            progress(f"app load: rep {rep + 1}/{plan.reps}: {TARGET_RATE:g} RPS")
            pair = await measure_pair(driver, TARGET_RATE, plan.phase_s, f"t{rep}")
            results.at_target.append(pair)
            progress(f"app load: rep {rep + 1}/{plan.reps}: cache hits")
            results.cache.append(await cache_hits(driver, plan))
            progress(f"app load: rep {rep + 1}/{plan.reps}: capacity steps")
            results.capacity.append(await capacity(driver, pair, plan, rep))
        for workers in plan.queue_workers:
            stack.set_workers(workers)
            series = results.queue[workers] = Series()
            for rep in range(plan.reps):
                progress(f"app load: queue throughput, {workers} worker(s), rep {rep + 1}")
                rate, refused = await queue_throughput(driver, plan.queue_tasks, f"{workers}-{rep}")
                series.add(rate)
                results.queue_refused[workers] += refused
        stack.set_workers(MAIN_WORKERS)
        progress(f"app load: soak, {plan.soak_s:g} s at {SOAK_RATE:g} RPS")
        results.soak = await soak(driver, plan)
    return results


# ---------------------------------------------------------------------------------------
# Report


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _triple_ms(values: Sequence[float]) -> str:
    return f"{_ms(min(values))} / {_ms(statistics.median(values))} / {_ms(max(values))}"


def _triple(values: Sequence[float], fmt: str = "{:.0f}") -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def _verdict(met: bool) -> str:
    return "met" if met else "**NOT met**"


def _errors(phases: Sequence[Phase]) -> str:
    total: Counter[str] = Counter()
    for phase in phases:
        total.update(phase.errors)
    return ", ".join(f"{kind}: {n}" for kind, n in total.most_common()) or "none"


def _machine() -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def render(
    results: Results, machine: str, date: str, duration_s: float, load: tuple[str, str]
) -> str:
    plan = results.plan
    pairs = results.at_target
    overhead = {pct: [p.overhead(pct) for p in pairs] for pct in OVERHEAD_TARGETS}
    errors_at_target = sum(p.app.error_count for p in pairs)
    cache_p50 = [c.p(50) for c in results.cache]
    capacities = [c.capacity_rps for c in results.capacity]
    lines = [
        "## Agent app",
        "",
        f"Measured {date} on {machine}; {plan.reps} repetition(s) of each figure, "
        f"{duration_s / 60:.1f} min in all (`python -m benchmarks.app_load"
        f"{' --quick' if plan is QUICK else ''}`). Load average (1, 5, 15 min) before the "
        f"run {load[0]}, after it {load[1]}: anything above the app's own share means other "
        "work was competing for the same cores, which latency figures feel at once.",
        "",
        "### Setup",
        "",
        f"- Processes, all on 127.0.0.1 and sharing the machine's cores: `redis-server` "
        f"(password, no persistence), `agent-app devllm --latency-ms {LLM_LATENCY_MS}`, "
        f"one `agent-app serve` and {MAIN_WORKERS} `agent-app worker` (1, 2 and 4 for the "
        f"queue throughput), each worker with `AGENT_WORKER_CONCURRENCY={WORKER_CONCURRENCY}` "
        f"and `AGENT_LLM_MAX_CONCURRENCY={LLM_CONCURRENCY}` (the defaults, 4 and 8, cap a "
        "worker near 40 tasks/s with 100 ms of LLM time per task). The load generator runs "
        "in the benchmark's own process.",
        "- Path measured: `POST /v1/tasks?wait=10` with a unique task "
        '("Summarise note <run> <n>"), answered synchronously once a worker has run it: '
        "API → Redis stream → worker → plan call and answer call to devllm (no tool "
        "fits the task, so exactly two LLM calls) → result in Redis → API. Success is "
        "HTTP 200 with `status: completed`; anything else, or no answer within 15 s, is an "
        "error.",
        "- Baseline, in the same run at the same arrival rate, just before the app phase: "
        "the same two chat completions (same prompts, the answer call with the tool "
        "schemas) posted straight to devllm back to back by the same client.",
        "- **Overhead at percentile p = app latency at p minus baseline latency at p.** The "
        "baseline holds the LLM time (2 x 50 ms plus devllm's own work and the client's "
        "HTTP round trips), so the overhead is what the app adds: API, Redis, the queue, "
        "the worker, the agent and its LLM client. It is a difference of percentiles, not "
        "a percentile of per-request differences.",
        "- Load generator: open loop with `httpx.AsyncClient` (fixed arrival schedule, "
        "latency timed from each request's scheduled start, so a stalled app cannot slow "
        f"the senders and hide its own delay). Phases of {plan.phase_s:g} s at "
        f"{TARGET_RATE:g} RPS, capacity steps of {plan.step_s:g} s, each a bounded count "
        "(rate x duration). The queue drains between phases. Percentiles are nearest-rank "
        "over the successful requests of a phase.",
        "",
        "### Targets",
        "",
        "| figure | target | measured (median of runs) | |",
        "| --- | --- | --- | --- |",
    ]
    for pct, target in OVERHEAD_TARGETS.items():
        value = statistics.median(overhead[pct])
        lines.append(
            f"| overhead p{pct} at {TARGET_RATE:g} RPS | ≤ {_ms(target)} ms | {_ms(value)} ms "
            f"| {_verdict(value <= target)} |"
        )
    lines += [
        f"| errors at {TARGET_RATE:g} RPS | 0 | {errors_at_target} (all runs) "
        f"| {_verdict(errors_at_target == 0)} |",
        f"| cache hit, p50 end to end | ≤ {_ms(CACHE_HIT_P50_TARGET)} ms "
        f"| {_ms(statistics.median(cache_p50))} ms "
        f"| {_verdict(statistics.median(cache_p50) <= CACHE_HIT_P50_TARGET)} |",
        f"| capacity (p99 overhead ≤ {_ms(CAPACITY_P99_LIMIT)} ms, no errors) "
        f"| ≥ {CAPACITY_TARGET_RPS:g} RPS | {statistics.median(capacities):g} RPS "
        f"| {_verdict(statistics.median(capacities) >= CAPACITY_TARGET_RPS)} |",
    ]
    lines += _soak_target(results.soak)
    lines += [
        "",
        f"### {TARGET_RATE:g} RPS through the app",
        "",
        "min / median / max over the runs, in ms; ratio = app ÷ baseline at the same "
        "percentile (medians).",
        "",
        "| figure | app | baseline (devllm direct) | overhead | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for pct in (50, 95, 99):
        app = [p.app.p(pct) for p in pairs]
        base = [p.base.p(pct) for p in pairs]
        ratio = statistics.median(app) / statistics.median(base)
        lines.append(
            f"| p{pct} | {_triple_ms(app)} | {_triple_ms(base)} | {_triple_ms(overhead[pct])} "
            f"| {ratio:.2f} |"
        )
    lines += [
        f"| achieved RPS | {_triple([p.app.achieved_rps for p in pairs], '{:.1f}')} "
        f"| {_triple([p.base.achieved_rps for p in pairs], '{:.1f}')} | | |",
        f"| requests per run | {pairs[0].app.sent} | {pairs[0].base.sent} | | |",
        f"| generator start lag p99 | {_triple_ms([percentile(p.app.start_lags, 99) for p in pairs])} "
        f"| {_triple_ms([percentile(p.base.start_lags, 99) for p in pairs])} | | |",
        f"| errors | {_errors([p.app for p in pairs])} | {_errors([p.base for p in pairs])} | | |",
    ]
    for role in ("api", "workers", "redis", "devllm"):
        app_cpu = [p.cpu_ms_per_request(role) for p in pairs]
        base_cpu = [p.cpu_ms_per_request(role, baseline=True) for p in pairs]
        lines.append(
            f"| CPU ms per request, {role} | {_triple(app_cpu, '{:.2f}')} "
            f"| {_triple(base_cpu, '{:.2f}')} | | |"
        )
    lines += [
        "",
        "CPU per request is the CPU time (user + system, from /proc/<pid>/stat) each role "
        "used over the phase (and, for the app, until the queue drained), divided by the "
        "requests sent. Unlike latency it hardly depends on what else runs on the machine, "
        "so it is the steadier figure when the machine is shared. Generator start lag is how "
        "late the load generator itself started requests against the schedule (CPU "
        "starvation of its own process); it is part of the latencies above.",
        "",
        "### Cache hit",
        "",
        f"The same task submitted again at {plan.cache_rate:g} RPS for {plan.phase_s:g} s "
        "after one warming submission: every LLM call is answered from the response cache "
        "(checked: `tokens.cached_calls` = 2 on every answer, else it counts as an error), "
        "but the task still goes through the API, the stream and a worker. Baseline: the "
        f"direct devllm pair at {TARGET_RATE:g} RPS of the same run, i.e. what the two calls "
        "the cache saves would have taken.",
        "",
        "| figure | min / median / max (ms) | ratio to baseline (medians) |",
        "| --- | --- | --- |",
    ]
    for pct in (50, 95, 99):
        hits = [c.p(pct) for c in results.cache]
        direct = statistics.median([p.base.p(pct) for p in pairs])
        lines.append(f"| p{pct} | {_triple_ms(hits)} | {statistics.median(hits) / direct:.3f} |")
    lines += [
        f"| errors | {_errors(results.cache)} | |",
        "",
        "### Capacity",
        "",
        f"Rates stepped up from {TARGET_RATE:g} RPS "
        f"({', '.join(f'{r:g}' for r in plan.capacity_steps)}), or down "
        f"({', '.join(f'{r:g}' for r in plan.capacity_below)}) when {TARGET_RATE:g} RPS "
        "already fails; each step's baseline is measured just before it at the same rate. "
        f"A step fails when its p99 overhead passes {_ms(CAPACITY_P99_LIMIT)} ms or it has an "
        "error; stepping stops at the first change of outcome. Capacity is the highest rate "
        "below the lowest failed one (0: every step tried failed).",
        "",
        "| run | rate | achieved | app p50 / p99 (ms) | baseline p50 / p99 (ms) "
        "| overhead p99 (ms) | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run, cap in enumerate(results.capacity, 1):
        for pair in cap.steps:
            lines.append(
                f"| {run} | {pair.app.rate:g} | {pair.app.achieved_rps:.1f} "
                f"| {_ms(pair.app.p(50))} / {_ms(pair.app.p(99))} "
                f"| {_ms(pair.base.p(50))} / {_ms(pair.base.p(99))} "
                f"| {_ms(pair.overhead(99))} | {_errors([pair.app])} |"
            )
    lines += [
        "",
        f"Capacity per run (RPS): {', '.join(f'{c:g}' for c in capacities)}; "
        f"min / median / max {_triple(capacities, '{:g}')}.",
        "",
        "### Queue throughput",
        "",
        f"{plan.queue_tasks} unique tasks submitted through the API without `wait` (64 "
        "submissions in flight), timed from the first submission until the stream has no "
        "entry pending or undelivered. Each task is two 50 ms LLM calls. Baseline: one "
        "worker.",
        "",
        "| workers | tasks/s, min / median / max | ratio to 1 worker (medians) "
        "| submissions refused (all runs) |",
        "| --- | --- | --- | --- |",
    ]
    one = statistics.median(results.queue[min(results.queue)].samples)
    for workers, series in sorted(results.queue.items()):
        lines.append(
            f"| {workers} | {series.min:.0f} / {series.median:.0f} / {series.max:.0f} "
            f"| {series.median / one:.2f} | {results.queue_refused[workers]} |"
        )
    lines += _soak_section(results.soak)
    lines += _cpu_budget(pairs)
    lines += ["", *PROFILE_NOTES]
    return "\n".join(lines) + "\n"


def _soak_target(result: Soak | None) -> list[str]:
    if result is None:
        return []
    first, last = result.samples[0][1], result.samples[-1][1]
    growth = max(last[name] - first[name] for name in first)
    # "Flat": no process grows by more than 10 % (or 10 MiB, whichever is larger).
    flat = all(last[n] - first[n] <= max(10.0, 0.1 * first[n]) for n in first)
    return [
        f"| RSS over the {result.duration_s:g} s soak | flat (≤ +10 % or +10 MiB per "
        f"process) | largest growth {growth:+.1f} MiB | {_verdict(flat)} |"
    ]


def _soak_section(result: Soak | None) -> list[str]:
    if result is None:
        return []
    names = list(result.samples[0][1])
    lines = [
        "",
        "### Soak",
        "",
        f"{result.duration_s:g} s at {result.rate:g} RPS on the same path, "
        f"{result.phase.sent} requests, errors: {_errors([result.phase])}, "
        f"p50 / p95 / p99 {_ms(result.phase.p(50))} / {_ms(result.phase.p(95))} / "
        f"{_ms(result.phase.p(99))} ms end to end (generator start lag p99 "
        f"{_ms(percentile(result.phase.start_lags, 99))} ms). VmRSS from /proc/<pid>/status in MiB "
        "(the last row after the queue drained).",
        "",
        "| time (s) | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for at, rss in result.samples:
        lines.append(f"| {at:.0f} | " + " | ".join(f"{rss[n]:.1f}" for n in names) + " |")
    first, last = result.samples[0][1], result.samples[-1][1]
    lines.append("| change | " + " | ".join(f"{last[n] - first[n]:+.1f}" for n in names) + " |")
    return lines


def _cpu_budget(pairs: Sequence[Pair]) -> list[str]:
    """What the CPU per task implies for the rates the machine can carry at all."""
    app = statistics.median(
        sum(p.cpu_ms_per_request(role) for role in ("api", "workers", "redis")) for p in pairs
    )
    llm = statistics.median(p.cpu_ms_per_request("devllm") for p in pairs)
    cores = os.cpu_count() or 1
    return [
        "",
        "### CPU budget",
        "",
        f"At {TARGET_RATE:g} RPS the app's processes (API, workers, redis) used {app:.1f} ms "
        f"of CPU per task and devllm {llm:.1f} ms (medians). {TARGET_RATE:g} tasks/s "
        f"therefore need {(app + llm) * TARGET_RATE / 1000:.2f} of the machine's {cores} "
        "cores before the load generator (same machine, its own process) and anything else "
        f"running; on CPU alone the ceiling is about {cores * 1000 / (app + llm):.0f} "
        "tasks/s. Past about 70 % of the cores, queueing for CPU dominates the latency, so "
        "the latency targets fail well before that ceiling.",
    ]


PROFILE_NOTES = [
    "### Profile and what changed",
    "",
    "py-spy (`py-spy record -r 200 -f raw --pid`, on the API, a worker and devllm at 100 "
    "and 30 RPS) before any change showed:",
    "",
    "- **API: the `?wait=` path polled.** `_maybe_wait` re-read the whole task hash "
    "(`HGETALL` + JSON decoding) every 50 ms for every waiting request: 21 % of the API's "
    "samples were in that loop. It also added 25 ms on average (up to 50) to every answer, "
    "and under a backlog the polls multiplied until the API's Redis pool (100 connections, "
    "failing fast) ran out: `MaxConnectionsError` answered as HTTP 503 (175 of 500 "
    "requests at 100 RPS in the first run). Now a worker publishes the task id on "
    "`<task stream>:done` when the task is final (`agent_app/worker.py`, one `PUBLISH` "
    "after the final write) and the API holds one subscription that wakes exactly the "
    "requests waiting for that task (`agent_app/api.py`); a waiting request still re-reads "
    "every 0.5 s, so a message lost while the subscription reconnects costs at most that.",
    '- **API: `@app.middleware("http")`** (Starlette\'s BaseHTTPMiddleware) ran every '
    "request through an extra task and memory streams. It is now a plain ASGI middleware "
    "(same headers, same gauge); the API CPU figures below cover both API changes.",
    "- **API and workers: Redis pool exhaustion.** After the two changes above, a 100 RPS "
    "phase on the busy machine still lost 132 of 600 requests to HTTP 503: bursts had more "
    "than 100 commands in flight and redis-py's default pool fails at once. "
    "`agent_app/runtime.py` now uses a blocking pool (same 100 connections, a command "
    "waits up to 5 s for one); the same phase then had no errors.",
    "- **Worker: the openai SDK's request transform** (`chat.completions.create` walks the "
    "messages and tool schemas against its TypedDicts) was 8 % of a worker's samples. "
    "`agent_app/llm.py` now posts the same body with the client's `post`. Its effect on the "
    "worker's CPU per task was within the noise of the A/B runs below (12.5 ms after, "
    "12.6 to 13.1 ms before).",
    "- Left as they are: the rest of a worker's time is the HTTP client (httpx/httpcore, "
    "about 17 %), redis-py (about 22 %, some 13 round trips per task) and the event loop's "
    "socket writes; the API's is uvicorn's pure-Python HTTP parser (h11, since neither "
    "httptools nor uvloop is installed) and FastAPI.",
    "",
    "Before and after, same machine and method (1 API, 2 workers, 30 RPS for 10 s, the "
    "direct devllm baseline at 30 RPS just before; the old code run from an export of the "
    "commit before the change; two alternating runs each, load average 3.5 to 4.6 from "
    "other work on the machine, which is why the latency spread is wide):",
    "",
    "| figure | before (run 1, run 2) | after (run 1, run 2) |",
    "| --- | --- | --- |",
    "| API CPU per task | 6.8, 7.1 ms | 3.9, 3.9 ms |",
    "| workers' CPU per task | 15.4, 13.1 ms | 13.1, 12.6 ms |",
    "| app p50 at 30 RPS (baseline p50 ~116 ms) | 187, 1539 ms | 164, 152 ms |",
    "| cache hit p50 (20 RPS) | 61.4, 63.4 ms | 14.3, 10.7 ms |",
    "| cache hit p99 (20 RPS) | 77.1, 80.9 ms | 32.4, 20.8 ms |",
]


def run(progress: Progress, quick: bool = False) -> str:
    """Measures the agent app and returns the markdown fragment for RESULTS.md."""
    plan = QUICK if quick else FULL
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = _load()
    started = time.perf_counter()
    with running_stack() as stack:
        results = asyncio.run(measure(stack, plan, progress))
    elapsed = time.perf_counter() - started
    return render(results, _machine(), date, elapsed, (load_before, _load()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.app_load", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases, a 20 s soak")
    parser.add_argument("--output", type=Path, help="write the fragment here, not to stdout")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    fragment = run(progress, quick=args.quick)
    if args.output:
        args.output.write_text(fragment)
    else:
        print(fragment, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
