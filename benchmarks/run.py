"""`make bench`: measures the program, the policy pack and the engine on this machine and
writes benchmarks/RESULTS.md.

    python -m benchmarks.run [--program-reps 5] [--what-if-reps 3] [--policy-reps 5]
                             [--engine-reps 5] [--output benchmarks/RESULTS.md]

About eight minutes on a 2-core machine with the defaults. Targets are goals reported
in the results, never assertions: nothing here runs in `make test`.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import engine, policy_eval, profiling, program_eval
from benchmarks.report import Machine, render

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--program-reps", type=int, default=5)
    parser.add_argument("--what-if-reps", type=int, default=3)
    parser.add_argument("--policy-reps", type=int, default=5)
    parser.add_argument("--engine-reps", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    load_before = _load()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    progress("profiling the program evaluation")
    profiled = profiling.run()
    program = program_eval.run(args.program_reps, args.what_if_reps, progress)
    policy = policy_eval.run(args.policy_reps, progress)
    engine_results = engine.run(args.engine_reps, progress)
    machine = Machine(
        cores=os.cpu_count() or 0,
        memory_gib=_memory_gib(),
        cpu_model=_cpu_model(),
        python=platform.python_version(),
        pulumi_cli=engine.pulumi_version(engine.engine_environment()),
        pulumi_sdk=importlib.metadata.version("pulumi"),
        date=date,
        load_before=load_before,
        load_after=_load(),
        duration_s=time.perf_counter() - started,
        repetitions=(
            f"program {args.program_reps} (GC what-if {args.what_if_reps}), "
            f"policy {args.policy_reps}, engine {args.engine_reps}"
        ),
    )
    args.output.write_text(render(machine, program, policy, engine_results, profiled))
    progress(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
