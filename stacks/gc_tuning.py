"""Garbage-collector settings for a program evaluation.

An evaluation is short (seconds) and allocates tens of thousands of container objects:
the provider SDKs' typing-heavy modules on import, then an Output, a future and a task
per property of every resource. With CPython's default thresholds (700, 10, 10) the
collector runs thousands of times, and each full collection walks every object alive,
including all the imported modules, so its cost grows with the stack: the profile in
benchmarks/RESULTS.md showed 42-57% of a warm evaluation in the collector, and the time
per added agent service rising with the number of services. Freezing what is alive
moves it out of the collector's view; higher thresholds make collections rare. Cycles
are still collected, just in fewer, larger batches.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

THRESHOLDS = (50_000, 1_000, 1_000)


def tune_for_program_run() -> None:
    """For a process that exists to run the program once (the engine's language host)."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


@contextmanager
def program_gc() -> Iterator[None]:
    """The same settings for an evaluation inside a longer-lived process (tests, tools),
    restored afterwards."""
    previous = gc.get_threshold()
    tune_for_program_run()
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
