"""Pure arithmetic of the peer comparison: CPU per call from /proc samples, the per-pair
ratio and its spread, the capacity step rule and the overload summary."""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def parse_stat_cpu_s(stat: str, clock_ticks: int) -> float:
    """utime + stime of one /proc/<pid>/stat line, in seconds. The command name may hold
    spaces and parentheses, so fields are counted after its last ')'."""
    fields = stat.rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of proc(5): 12th and 13th after the name.
    return (int(fields[11]) + int(fields[12])) / clock_ticks


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live descendants (a proxy may fork workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = parse_stat_cpu_s(Path(f"/proc/{pid}/stat").read_text(), ticks)
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        total += sum(tree_cpu_s(int(child)) for child in children)
    return total


def per_call_ms(
    cpu_before: Mapping[str, float], cpu_after: Mapping[str, float], calls: int
) -> float:
    """CPU of every role summed, in ms per call."""
    if calls <= 0:
        raise ValueError("calls must be positive")
    used = sum(cpu_after[role] - cpu_before[role] for role in cpu_after)
    return used / calls * 1000


@dataclass(frozen=True)
class Spread:
    min: float
    median: float
    max: float


def spread(values: Sequence[float]) -> Spread:
    return Spread(min(values), statistics.median(values), max(values))


def pair_ratios(app_ms: Sequence[float], peer_ms: Sequence[float]) -> list[float]:
    """App / peer of each alternating pair: both halves of a pair saw about the same
    machine, so the ratio holds up under noise that moves the absolute figures."""
    if len(app_ms) != len(peer_ms) or not app_ms:
        raise ValueError("one peer figure per app figure, at least one pair")
    return [app / peer for app, peer in zip(app_ms, peer_ms, strict=True)]


@dataclass(frozen=True)
class Step:
    rate: float
    sent: int
    errors: int
    p99_s: float


def passes(step: Step, fixed_delay_s: float, limit_s: float) -> bool:
    return step.errors == 0 and step.p99_s - fixed_delay_s < limit_s


def capacity(steps: Sequence[Step], fixed_delay_s: float, limit_s: float) -> float:
    """The highest rate, stepping up, before the first that fails; 0 when the first fails."""
    passed = 0.0
    for step in sorted(steps, key=lambda step: step.rate):
        if not passes(step, fixed_delay_s, limit_s):
            break
        passed = step.rate
    return passed
