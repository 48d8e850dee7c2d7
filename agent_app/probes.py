"""Liveness, readiness and metrics, for the API and the worker alike: each role says only
how it knows it is alive and whether any LLM circuit can still be used. The queue's
backlog is the API's alone to export (`queue_metrics`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from agent_app import redisfaults
from agent_app.metrics import QueueMetrics
from agent_app.queue import TaskQueue
from agent_app.runtime import Runtime


class Health(BaseModel):
    status: Literal["ok", "stale"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    problems: list[str]


def _always_alive() -> bool:
    return True


def _nothing() -> None:
    return None


@dataclass
class Probes:
    runtime: Runtime
    queue: TaskQueue
    # A problem when no LLM circuit can be used, else None.
    circuit_problem: Callable[[], Awaitable[str | None]]
    alive: Callable[[], bool] = _always_alive
    # Brings time-driven gauges (the circuits') up to date before a scrape.
    refresh: Callable[[], None] = _nothing
    queue_gauges: QueueMetrics = field(default_factory=QueueMetrics)

    def health(self) -> Health:
        return Health(status="ok" if self.alive() else "stale")

    async def readiness(self) -> Readiness:
        problems: list[str] = []
        faults = self.runtime.redis_faults
        try:
            await self.runtime.redis.ping()
            faults.succeeded()
        except Exception as exc:
            faults.failed(exc)
            problems.append(redisfaults.describe(exc))
        try:
            circuit = await self.circuit_problem()
        except Exception as exc:
            # A check that reads Redis fails with it: one problem to report, not two.
            circuit = None if problems else redisfaults.describe(exc)
        if circuit:
            problems.append(circuit)
        return Readiness(status="not ready" if problems else "ready", problems=problems)

    def metrics(self) -> bytes:
        """This process's own series."""
        self.refresh()
        return self.runtime.metrics.render()

    async def queue_metrics(self) -> bytes:
        """The task stream's backlog, read from Redis (see `metrics.QueueMetrics`); a 503
        when Redis cannot say, so the scrape fails visibly instead of reporting 0."""
        backlog = await self.queue.backlog()
        return self.queue_gauges.render(
            self.queue.stream, self.queue.group, backlog.lag, backlog.pending
        )
