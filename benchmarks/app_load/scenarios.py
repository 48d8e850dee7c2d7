"""The measurements: overhead against the direct-LLM baseline, capacity, cache hits,
queue throughput and the soak."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from benchmarks.app_load.load import Driver, Phase, _client, _queue_depth, open_loop
from benchmarks.app_load.plan import (
    CAPACITY_P99_LIMIT,
    MAIN_WORKERS,
    SOAK_RATE,
    TARGET_RATE,
    Plan,
    Progress,
)
from benchmarks.app_load.processes import Stack
from benchmarks.stats import Series


@dataclass
class Pair:
    """One rate measured through the app and straight to devllm, in the same run."""

    app: Phase
    base: Phase
    app_cpu: dict[str, float]  # CPU seconds per role over the app phase and its drain
    base_cpu: dict[str, float]

    def cpu_ms_per_request(self, role: str, baseline: bool = False) -> float:
        if baseline:
            return _cpu_ms_per_request(self.base, self.base_cpu, role)
        return _cpu_ms_per_request(self.app, self.app_cpu, role)

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


def _cpu_ms_per_request(phase: Phase, used: dict[str, float], role: str) -> float:
    return used[role] / phase.sent * 1000


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


@dataclass
class CacheHits:
    hits: Phase
    # `GET /health` at the same rate just before: one request to the API that does
    # nothing, the floor of any answer the API gives at that rate on this machine.
    floor: Phase
    hits_cpu: dict[str, float]  # CPU seconds per role over each phase
    floor_cpu: dict[str, float]

    def cpu_ms_per_request(self, role: str, floor: bool = False) -> float:
        if floor:
            return _cpu_ms_per_request(self.floor, self.floor_cpu, role)
        return _cpu_ms_per_request(self.hits, self.hits_cpu, role)


async def cache_hits(driver: Driver, plan: Plan, rate: float) -> CacheHits:
    status, _ = await driver.submit(f"Recall cached note {driver.run_id}")
    if status >= 400:
        raise RuntimeError(f"the submission that fills the cache got HTTP {status}")
    stack = driver.stack
    before = stack.cpu()
    floor = await open_loop(driver.health_request(), rate, plan.phase_s)
    middle = stack.cpu()
    hits = await open_loop(driver.app_request("", expect_cached=True), rate, plan.phase_s)
    after = stack.cpu()
    await driver.drained()
    return CacheHits(hits, floor, _used(middle, after), _used(before, middle))


async def queue_throughput(driver: Driver, tasks: int, tag: str) -> tuple[float, int]:
    """Accepted tasks per second from the first submission until the stream is empty,
    and the submissions refused. Submitting (without waiting) is far quicker than
    processing, so the workers set the pace."""
    redis = driver.stack.redis()
    semaphore = asyncio.Semaphore(64)

    async def submit(index: int) -> bool:
        async with semaphore:
            try:
                status, _ = await driver.submit(f"q{tag} {driver.unique_task(index)}", wait=False)
            except (aiohttp.ClientError, OSError):
                return False
            return status == 202

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
    cache: dict[float, list[CacheHits]] = field(default_factory=dict)
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
            for rate in plan.cache_rates:
                progress(f"app load: rep {rep + 1}/{plan.reps}: cache hits at {rate:g} RPS")
                hits = await cache_hits(driver, plan, rate)
                results.cache.setdefault(rate, []).append(hits)
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
