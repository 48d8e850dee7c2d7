"""The app beside a peer (LiteLLM's proxy), per core (issue 19 points 1-3).

    python -m benchmarks.run --only peer

One stack (redis-server, devllm, the API and one worker) pinned as `measure` says, plus
LiteLLM's proxy from its own locked virtualenv (`venv`, `proxy`). Measures alternating
app / peer pairs of CPU per LLM call and per cache hit, the app's capacity on its one
core, CPU per task by role below it, and what 1.5x and 2x that capacity do. About 3
minutes on 2 cores (182 s on 2026-12-05), plus a minute the first time to install the proxy.
Modules: `venv`, `proxy`, `compare` (the arithmetic), `measure`, `report`.
"""

from __future__ import annotations

import asyncio
import datetime
import tempfile
import time
from pathlib import Path

import aiohttp
import uvloop

from benchmarks.app_load.load import Driver
from benchmarks.app_load.plan import Progress
from benchmarks.app_load.processes import Stack, running_stack
from benchmarks.peer import attribution, measure, proxy, venv
from benchmarks.peer.report import Figures, render
from benchmarks.stats import load_average

PAIRS = 3
CALL_RATE = 50.0  # LLM calls/s: well below either side's saturation on one core
WINDOW_S = 8.0
CAPACITY_RATES = (50.0, 75.0, 100.0, 125.0, 150.0, 200.0, 250.0, 300.0)
STEP_S = 6.0
OVERLOAD_FACTORS = (1.5, 2.0)


async def _measure(stack: Stack, url: str, pid: int, progress: Progress) -> Figures:
    connector = aiohttp.TCPConnector(limit=2000, keepalive_timeout=2.0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=15)
    ) as http:
        driver = Driver(stack, http)
        peer = measure.Peer(http, url, pid, driver.run_id)
        progress("warming both up")
        await measure.app_window(driver, driver.app_request("warm"), 20, 2)
        await peer.window(peer.request("warm", False), 20, 2)
        pairs = await measure.peer_pairs(driver, peer, PAIRS, CALL_RATE, WINDOW_S, progress)
        profiles = await _profiles(driver, stack, progress)
        cap, steps = await measure.capacity_steps(driver, CAPACITY_RATES, STEP_S, progress)
        # No step passing still leaves the lowest rate to overload from.
        base = max(cap, CAPACITY_RATES[0])
        unloaded = await measure.app_window(driver, driver.app_request("u"), base / 2, WINDOW_S)
        overloads = []
        for factor in OVERLOAD_FACTORS:
            progress(f"overload {factor:g}x of {cap:g} tasks/s")
            overloads.append(await measure.overload(driver, base, factor, STEP_S))
    return Figures(pairs, cap, steps, unloaded, overloads, profiles)


async def _profiles(
    driver: Driver, stack: Stack, progress: Progress
) -> dict[str, attribution.Shares]:
    """py-spy on the API and the worker under the miss load, then on the API under hits."""
    found: dict[str, attribution.Shares] = {}
    with tempfile.TemporaryDirectory(prefix="peer-spy-") as tmp:
        for label, pids, request, rate in (
            (
                "miss",
                {"api": stack.procs["api"].pid, "worker": stack.workers[0].pid},
                driver.app_request("spy"),
                CALL_RATE / measure.CALLS_PER_TASK,
            ),
            (
                "hit",
                {"api": stack.procs["api"].pid},
                driver.app_request("", expect_cached=True),
                CALL_RATE,
            ),
        ):
            progress(f"py-spy on {', '.join(pids)} under {label} load")
            spies = {
                role: attribution.record(pid, int(WINDOW_S), Path(tmp) / f"{label}-{role}.txt")
                for role, pid in pids.items()
            }
            await measure.app_window(driver, request, rate, WINDOW_S)
            for role, spy in spies.items():
                await asyncio.to_thread(spy.wait)
                out = Path(tmp) / f"{label}-{role}.txt"
                if out.exists():
                    found[f"{role}, {label}"] = attribution.shares(out.read_text())
    return found


def run(progress: Progress) -> str:
    python = venv.ensure(progress)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="peer-") as tmp,
        running_stack(Path(tmp), measure.ADMISSION) as stack,
    ):
        stack.set_workers(1)
        measure.pin_stack(stack)
        progress("starting LiteLLM's proxy on the app's core")
        proc, url = proxy.start(python, stack.devllm_url, Path(tmp), measure.APP_CPU)
        try:
            figures = uvloop.run(_measure(stack, url, proc.pid, progress))
        finally:
            proc.terminate()
            proc.wait(30)
    elapsed = time.perf_counter() - started
    return render(figures, date, elapsed, (load_before, load_average()))
