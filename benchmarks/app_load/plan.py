"""What the app benchmark runs: rates, durations, repetitions and the issue's targets."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
    # A cache hit at a light and at the target rate: between requests 50 ms apart the
    # processes sleep, and waking them is part of every hop on this machine.
    cache_rates: tuple[float, ...]
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
    cache_rates=(20, TARGET_RATE),
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
    cache_rates=(20, TARGET_RATE),
    capacity_steps=(150, 200),
    capacity_below=(50,),
    queue_tasks=150,
    queue_workers=(1, 2, 4),
    soak_s=20,
    soak_samples=3,
)
