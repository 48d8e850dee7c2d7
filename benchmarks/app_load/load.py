"""The open-loop load generator: requests start on a fixed schedule, timed from it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
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
