"""Liveness, readiness and metrics, for the API and the worker alike: each role says only
how it knows it is alive and whether any LLM circuit can still be used."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from agent_app import redisfaults
from agent_app.logging import get_logger
from agent_app.queue import TaskQueue
from agent_app.runtime import Runtime

log = get_logger(__name__)


class Health(BaseModel):
    status: Literal["ok", "stale"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    problems: list[str]


def _always_alive() -> bool:
    return True


@dataclass
class Probes:
    runtime: Runtime
    queue: TaskQueue
    # A problem when no LLM circuit can be used, else None.
    circuit_problem: Callable[[], Awaitable[str | None]]
    alive: Callable[[], bool] = _always_alive

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

    async def metrics(self) -> bytes:
        m = self.runtime.metrics
        try:
            depth = await self.queue.depth()
            m.queue_depth.labels(**m.rel(stream=self.queue.stream, group=self.queue.group)).set(
                depth
            )
        except Exception as exc:
            log.warning("queue depth unavailable", error=type(exc).__name__)
        return m.render()
