"""The peer, capacity and overload measurements on one running stack.

Roles are pinned to cores: the app's processes (API, one worker, redis-server) on CPU 0,
the load generator and devllm on CPU 1; LiteLLM's proxy, when measured, gets the app's
core (CPU 0), so each side has one core of its own and the same neighbours. CPU is read
from /proc over each fixed-rate window (and the drain after it), so the generator's CPU
is never counted."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.app_load.load import Driver, Phase, open_loop
from benchmarks.app_load.plan import LLM_LATENCY_MS, Progress
from benchmarks.app_load.processes import Stack
from benchmarks.peer.compare import Step, capacity, per_call_ms, tree_cpu_s
from benchmarks.peer.proxy import MODEL

APP_CPU, LOAD_CPU = 0, 1
CALLS_PER_TASK = 2
FIXED_DELAY_S = CALLS_PER_TASK * LLM_LATENCY_MS / 1000
P99_LIMIT_S = 0.100

# Bounded admission as a deployment that promises a latency sets it: the capacity steps
# allow a task (two 50 ms calls) 100 ms of overhead, so a task is refused when the
# backlog would hold it past 0.2 s in all; the floor, for a service whose finishing rate
# has decayed while idle, is a few tasks' worth.
ADMISSION = {"AGENT_ADMISSION_MAX_LATENCY_S": "0.2", "AGENT_ADMISSION_MIN_TASKS": "8"}


def pin(pid: int, cpu: int) -> None:
    """Every thread of `pid` (threads started before the call keep their own mask)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def pin_stack(stack: Stack) -> None:
    for role in ("api", "redis"):
        pin(stack.procs[role].pid, APP_CPU)
    for proc in stack.workers:
        pin(proc.pid, APP_CPU)
    pin(stack.procs["devllm"].pid, LOAD_CPU)
    pin(os.getpid(), LOAD_CPU)


def app_cpu(stack: Stack) -> dict[str, float]:
    used = {role: tree_cpu_s(stack.procs[role].pid) for role in ("api", "redis")}
    used["worker"] = sum(tree_cpu_s(proc.pid) for proc in stack.workers)
    return used


@dataclass
class Window:
    phase: Phase
    cpu_s: dict[str, float]  # per role over the window and its drain

    def ms_per(self, calls_per_request: int, roles: tuple[str, ...] | None = None) -> float:
        chosen = {r: v for r, v in self.cpu_s.items() if roles is None or r in roles}
        zero = dict.fromkeys(chosen, 0.0)
        return per_call_ms(zero, chosen, self.phase.sent * calls_per_request)


async def app_window(driver: Driver, request: Any, rate: float, seconds: float) -> Window:
    before = app_cpu(driver.stack)
    phase = await open_loop(request, rate, seconds)
    await driver.drained()
    after = app_cpu(driver.stack)
    return Window(phase, {role: after[role] - before[role] for role in after})


class Peer:
    def __init__(self, http: aiohttp.ClientSession, url: str, pid: int, run_id: str) -> None:
        self.http, self.url, self.pid, self.run_id = http, url, pid, run_id

    def request(self, prefix: str, cached: bool) -> Any:
        async def one(index: int) -> str | None:
            content = (
                f"Recall cached note {self.run_id}" if cached else f"{prefix} {self.run_id} {index}"
            )
            body: dict[str, Any] = {
                "model": MODEL,
                "messages": [{"role": "user", "content": content}],
            }
            if cached:
                body["cache"] = {"use-cache": True}
            async with self.http.post(f"{self.url}/v1/chat/completions", json=body) as response:
                await response.read()
                if response.status != 200:
                    return f"HTTP {response.status}"
                if cached and "x-litellm-cache-key" not in response.headers:
                    return "cache miss"
                return None

        return one

    async def window(self, request: Any, rate: float, seconds: float) -> Window:
        before = tree_cpu_s(self.pid)
        phase = await open_loop(request, rate, seconds)
        await asyncio.sleep(0.2)
        return Window(phase, {"litellm": tree_cpu_s(self.pid) - before})


@dataclass
class PeerResults:
    app_miss: list[Window] = field(default_factory=list)
    peer_miss: list[Window] = field(default_factory=list)
    app_hit: list[Window] = field(default_factory=list)
    peer_hit: list[Window] = field(default_factory=list)


async def peer_pairs(
    driver: Driver, peer: Peer, pairs: int, call_rate: float, seconds: float, progress: Progress
) -> PeerResults:
    """Alternating app / peer windows at the same LLM call rate (the app's tasks make two
    calls each, so it is offered half as many tasks), then the same for cache hits."""
    found = PeerResults()
    await driver.submit(f"Recall cached note {driver.run_id}")
    await peer.request("", cached=True)(0)
    for index in range(pairs):
        progress(f"peer pair {index + 1}/{pairs}: misses at {call_rate:g} LLM calls/s")
        found.app_miss.append(
            await app_window(
                driver, driver.app_request(f"pm{index}"), call_rate / CALLS_PER_TASK, seconds
            )
        )
        found.peer_miss.append(
            await peer.window(peer.request(f"pm{index}", False), call_rate, seconds)
        )
        progress(f"peer pair {index + 1}/{pairs}: cache hits at {call_rate:g}/s")
        found.app_hit.append(
            await app_window(driver, driver.app_request("", expect_cached=True), call_rate, seconds)
        )
        found.peer_hit.append(await peer.window(peer.request("", True), call_rate, seconds))
    return found


async def capacity_steps(
    driver: Driver, rates: tuple[float, ...], seconds: float, progress: Progress
) -> tuple[float, list[tuple[Step, Window]]]:
    steps: list[tuple[Step, Window]] = []
    for rate in rates:
        # A failed step is tried once more and the better try kept: other sessions share
        # the cores, and one disturbed window must not end the search.
        for attempt in range(2):
            window = await app_window(
                driver, driver.app_request(f"c{rate:g}.{attempt}"), rate, seconds
            )
            step = Step(rate, window.phase.sent, window.phase.error_count, window.phase.p(99))
            if capacity([step], FIXED_DELAY_S, P99_LIMIT_S) == rate:
                break
        steps.append((step, window))
        progress(
            f"capacity step {rate:g} tasks/s: p99 {step.p99_s * 1000:.0f} ms, {step.errors} errors"
        )
        if capacity([s for s, _ in steps], FIXED_DELAY_S, P99_LIMIT_S) < rate:
            break
    return capacity([s for s, _ in steps], FIXED_DELAY_S, P99_LIMIT_S), steps


@dataclass
class Overload:
    factor: float
    window: Window
    refused: int
    refusal_max_s: float
    completed: int


async def overload(driver: Driver, rate: float, factor: float, seconds: float) -> Overload:
    """Offered `factor` x capacity; refusals (429/503) timed apart from accepted tasks."""
    refusals: list[float] = []
    completed = 0

    async def one(index: int) -> str | None:
        nonlocal completed
        began = time.perf_counter()
        status, _ = await driver.submit(f"o{factor:g} {driver.unique_task(index)}")
        if status in (429, 503):
            refusals.append(time.perf_counter() - began)
            return f"refused {status}"
        if status != 200:
            return f"HTTP {status}"
        completed += 1
        return None

    window = await app_window(driver, one, rate * factor, seconds)
    return Overload(factor, window, len(refusals), max(refusals, default=0.0), completed)
