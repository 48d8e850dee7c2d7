"""Summaries of repeated timings and the straight-line fit of cost against size."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages, as each section reports them."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


@dataclass
class Series:
    """Repeated measurements of one figure, in seconds."""

    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


@dataclass(frozen=True)
class LinearFit:
    slope: float
    intercept: float
    r_squared: float


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> LinearFit:
    """Least squares over every sample (not the medians), so the noise shows in R²."""
    slope, intercept = statistics.linear_regression(xs, ys)
    mean = statistics.fmean(ys)
    total = sum((y - mean) ** 2 for y in ys)
    residual = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys, strict=True))
    return LinearFit(slope, intercept, 1.0 - residual / total if total else 1.0)
