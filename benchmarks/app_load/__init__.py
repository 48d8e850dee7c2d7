"""Load benchmark of the agent app: one API process and N workers on a real redis-server,
with the dev LLM server answering after a fixed 50 ms.

    python -m benchmarks.app_load [--quick] [--output FILE] [--logs DIR]

The load generator is open loop (requests start on a fixed schedule whatever the answers
do) and times each request from its scheduled start, so a slow answer cannot delay the
next request and hide itself (no coordinated omission). Everything runs on 127.0.0.1.
About 14 minutes with the defaults, including the 5-minute soak; `--quick` takes about
two and skips the soak's length. Targets are reported, never asserted.

Modules: `plan` (rates, durations, targets), `processes` (the processes under test),
`load` (the load generator), `scenarios` (what is measured), `report` (the fragment).
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import uvloop

from benchmarks.app_load.plan import FULL, QUICK, Progress
from benchmarks.app_load.processes import running_stack
from benchmarks.app_load.report import _machine, render
from benchmarks.app_load.scenarios import measure
from benchmarks.stats import load_average


def run(progress: Progress, quick: bool = False, workdir: Path | None = None) -> str:
    """Measures the agent app and returns the markdown fragment for RESULTS.md. The
    processes' logs go to `workdir` when given (kept), else to a temporary directory."""
    plan = QUICK if quick else FULL
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    started = time.perf_counter()
    # The queue phase submits its backlog at once to time how fast workers drain it:
    # bounded admission must let all of it in (the peer bench measures shedding).
    admission = {"AGENT_ADMISSION_MIN_TASKS": str(plan.queue_tasks + 1)}
    with running_stack(workdir, admission) as stack:
        # uvloop, as the workers run: less of the generator's CPU taken from what it measures.
        results = uvloop.run(measure(stack, plan, progress))
    elapsed = time.perf_counter() - started
    return render(results, _machine(), date, elapsed, (load_before, load_average()))
