"""The open-loop load generator: requests start on a fixed schedule, timed from it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from redis.asyncio import Redis

from agent_app.agent import _PLAN_PROMPT, _SYSTEM_PROMPTS
from agent_app.tools import default_registry
from benchmarks.app_load.plan import API_KEY, WAIT_S
from benchmarks.app_load.processes import Stack


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
    # The generator's own CPU over the phase: it shares the cores with what it measures.
    generator_cpu_s: float

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def achieved_rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def p(self, pct: float) -> float:
        return percentile(self.latencies, pct)

    @property
    def generator_cpu_ms(self) -> float:
        """The load generator's CPU per request sent, in ms."""
        return self.generator_cpu_s / self.sent * 1000


Request = Callable[[int], Awaitable[str | None]]  # None when fine, else an error kind


async def open_loop(request: Request, rate: float, duration_s: float) -> Phase:
    # Not loop.time(): uvloop's clock counts whole milliseconds.
    clock = time.perf_counter
    count = max(1, round(rate * duration_s))
    start = clock() + 0.05
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    start_lags: list[float] = []
    last_done = start
    cpu_before = time.process_time()

    async def one(index: int, scheduled: float) -> None:
        nonlocal last_done
        start_lags.append(clock() - scheduled)
        try:
            error = await request(index)
        # OSError includes the TimeoutError aiohttp raises when the total timeout passes.
        except (aiohttp.ClientError, OSError) as exc:
            error = type(exc).__name__
        done = clock()
        last_done = max(last_done, done)
        if error is None:
            latencies.append(done - scheduled)
        else:
            errors[error] += 1

    tasks = []
    for index in range(count):
        scheduled = start + index / rate
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    await asyncio.gather(*tasks)
    cpu_s = time.process_time() - cpu_before
    latencies.sort()
    start_lags.sort()
    return Phase(
        rate, count, len(latencies), errors, latencies, last_done - start, start_lags, cpu_s
    )


def _client() -> aiohttp.ClientSession:
    """aiohttp rather than httpx: under half the CPU per request, a quarter with hundreds
    in flight, and the generator shares the cores with the processes it measures."""
    # Idle connections are dropped before uvicorn's 5 s keep-alive closes them: reusing one
    # as the server closes it fails the request with an error that is not the app's.
    connector = aiohttp.TCPConnector(limit=2000, keepalive_timeout=2.0)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=WAIT_S + 5)
    )


class Driver:
    """The two request paths measured: a task through the app, and the same LLM calls
    sent straight to devllm."""

    def __init__(self, stack: Stack, http: aiohttp.ClientSession) -> None:
        self.stack = stack
        self.http = http
        self.run_id = uuid.uuid4().hex[:8]
        self.tools = default_registry().schemas()

    def unique_task(self, index: int) -> str:
        # Words and one number: devllm calls no tool for it, so a task is exactly two LLM
        # calls (plan and answer), and the run id keeps every task a cache miss.
        return f"Summarise note {self.run_id} {index}"

    async def post(
        self, url: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """The status and the whole body: reading it all is what returns the connection to
        the pool."""
        async with self.http.post(url, json=body, headers=headers) as response:
            return response.status, await response.read()

    async def submit(self, task: str, wait: bool = True) -> tuple[int, bytes]:
        query = f"?wait={WAIT_S:g}" if wait else ""
        return await self.post(
            f"{self.stack.api_url}/v1/tasks{query}", {"task": task}, {"X-API-Key": API_KEY}
        )

    def app_request(self, prefix: str, expect_cached: bool = False) -> Request:
        async def request(index: int) -> str | None:
            task = f"Recall cached note {self.run_id}" if expect_cached else ""
            status, raw = await self.submit(task or f"{prefix} {self.unique_task(index)}")
            if status != 200:
                return f"HTTP {status}"
            body = json.loads(raw)
            if body["status"] != "completed":
                return str(body["status"])
            if expect_cached and not (body["cached"] and body["tokens"]["cached_calls"] == 2):
                return "cache miss"
            return None

        return request

    def health_request(self) -> Request:
        async def request(_: int) -> str | None:
            async with self.http.get(f"{self.stack.api_url}/health") as response:
                await response.read()
                return None if response.status == 200 else f"HTTP {response.status}"

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
                status, _ = await self.post(
                    f"{self.stack.devllm_url}/v1/chat/completions",
                    body,
                    {"Authorization": "Bearer dev-llm-key"},
                )
                if status != 200:
                    return f"HTTP {status}"
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
