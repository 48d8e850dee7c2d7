"""Per-model circuit breaker: closed, open after repeated failures, half-open probing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts consecutive failures; once open it rejects calls until `reset_s` has passed,
    then lets a single probe through. The probe's outcome closes or re-opens the circuit."""

    def __init__(
        self,
        name: str,
        failure_threshold: int,
        reset_s: float,
        on_change: Callable[[str, State], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = failure_threshold
        self._reset_s = reset_s
        self._on_change = on_change
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self._last_reported: State = "closed"
        # Said when a call is refused, so a task's error names the cause, not just the circuit.
        self.last_failure = ""

    @property
    def state(self) -> State:
        if self._opened_at is None:
            current: State = "closed"
        elif self._clock() - self._opened_at >= self._reset_s:
            current = "half_open"
        else:
            current = "open"
        if current != self._last_reported:
            self._last_reported = current
            if self._on_change is not None:
                self._on_change(self.name, current)
        return current

    def seconds_until_probe(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._reset_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_in_flight = False
        _ = self.state

    def record_failure(self, reason: str = "") -> None:
        if reason:
            self.last_failure = reason
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        self._failures += 1
        if was_probe or self._failures >= self._threshold:
            self._opened_at = self._clock()
        _ = self.state

    def release_probe(self) -> None:
        """A probe that ended without saying anything about the model's health."""
        self._probe_in_flight = False
