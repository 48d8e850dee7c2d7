"""Where program evaluation spends its time: cProfile of `simulate("prod")`, and the
share of the garbage collector measured with `gc.callbacks`.

Runs in a fresh interpreter (`python -m benchmarks.profiling`), printing JSON:
  cold   the first evaluation (includes the lazy provider-SDK imports), cumulative
         time of a few named functions that the profile shows dominate;
  warm   the second evaluation, the top functions by own time;
  gc     wall time inside collections, per generation, for prod and prod with 10
         services (evaluated warm, unprofiled).
cProfile roughly doubles the run time; its shares, not its absolute numbers, count.
It sees the main thread only: the mock monitor's work on executor threads is not in it.
"""

from __future__ import annotations

import cProfile
import gc
import json
import pstats
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.program_eval import patched_program

REPO = str(Path(__file__).resolve().parent.parent)

# (label, file suffix, function): what the cold profile is summarised by.
NAMED = [
    ("stacks.program.build (the program)", "stacks/program.py", "build"),
    (
        "module imports during evaluation (lazy SDK submodules)",
        "<frozen importlib._bootstrap>",
        "_find_and_load",
    ),
    ("pulumi rpc.serialize_properties", "pulumi/runtime/rpc.py", "serialize_properties"),
    ("pulumi Output contains_unknowns", "pulumi/output.py", "contains_unknowns"),
    ("pulumi Output.all / from_input", "pulumi/output.py", "from_input"),
    ("costing.pricing.price (cost output)", "costing/pricing.py", "price"),
]

Stats = dict[tuple[str, int, str], tuple[int, int, float, float, Any]]


def _profiled(action: Callable[[], object]) -> tuple[float, Stats]:
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(action)
    elapsed = time.perf_counter() - start
    stats: Stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    return elapsed, stats


def _cumulative(stats: Stats, suffix: str, function: str) -> float:
    return sum(
        entry[3]
        for (file, _, name), entry in stats.items()
        if file.endswith(suffix) and name == function
    )


def _short(key: tuple[str, int, str]) -> str:
    """Paths relative to site-packages, the standard library or the repository."""
    file, line, name = key
    for root in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"], REPO):
        file = file.removeprefix(f"{root}/")
    return f"{file}:{line}({name})"


def _gc_share(services: int) -> dict[str, Any]:
    import stacks.program as program
    from stacks.simulate import simulate

    spent = {0: 0.0, 1: 0.0, 2: 0.0}
    counts = {0: 0, 1: 0, 2: 0}
    started: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            spent[info["generation"]] += time.perf_counter() - started.pop()
            counts[info["generation"]] += 1

    scenario = "prod" if services == 1 else "services"
    with patched_program(program, scenario, services):
        simulate("prod")
        gc.callbacks.append(callback)
        start = time.perf_counter()
        simulate("prod")
        total = time.perf_counter() - start
        gc.callbacks.remove(callback)
    return {
        "services": services,
        "total": total,
        "gc": sum(spent.values()),
        "by_generation": {str(g): [counts[g], spent[g]] for g in spent},
    }


def _measure() -> dict[str, Any]:
    import stacks.program  # noqa: F401 - imported before profiling, as in program_eval
    from stacks.simulate import simulate

    cold_total, cold = _profiled(lambda: simulate("prod"))
    warm_total, warm = _profiled(lambda: simulate("prod"))
    top = sorted(warm.items(), key=lambda item: item[1][2], reverse=True)[:12]
    return {
        "cold_total": cold_total,
        "cold_named": [[label, _cumulative(cold, s, f)] for label, s, f in NAMED],
        "warm_total": warm_total,
        "warm_named": [[label, _cumulative(warm, s, f)] for label, s, f in NAMED],
        "warm_top": [[_short(key), entry[0], entry[2], entry[3]] for key, entry in top],
        "gc": [_gc_share(1), _gc_share(10)],
    }


def run() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.profiling"], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


if __name__ == "__main__":
    print(json.dumps(_measure()))
