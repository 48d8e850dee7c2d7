"""Prices, per-call cost and the per-tenant budget: the ledger of what was spent (one Redis
hash per period) and the reservations of what admitted tasks are expected to spend.

How the budget holds under concurrency (see the README, "Budgets"):

- Admission (`TaskStore.admit`) reserves a task's expected cost, atomically with writing
  and queueing it, and only if spend plus every reservation plus this one fits the budget.
- Each LLM call is charged (`BudgetLedger.charge`, with the caching of its reply): to the
  spend, to the task, and off its reservation; the task's final write releases what is
  left of it.
- Before each LLM call the spend is read again (with the call's cache lookup), and a task
  whose tenant has spent its budget stops there (`BudgetStatus.stop_if_exhausted`). So
  the budget can be exceeded only by the calls already in flight when it was reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from agent_app import scripts
from agent_app.keys import RESERVED_TOTAL, ledger_key, reservations_key, task_key
from agent_app.settings import ModelSpec, Settings

_LEDGER_TTL_S = 40 * 24 * 3600  # outlives its month, then Redis drops it


def call_cost(spec: ModelSpec, prompt_tokens: float, completion_tokens: float) -> float:
    return (
        prompt_tokens * spec.input_usd_per_1k + completion_tokens * spec.output_usd_per_1k
    ) / 1000


def current_period(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m")


class BudgetExhaustedError(Exception):
    """The tenant has spent its budget: no further LLM call is made for it."""


@dataclass(frozen=True)
class BudgetStatus:
    """A tenant's budget for a period: spent, and reserved for tasks admitted and not yet
    final. Limits and the remaining room count both (a reservation is as good as spent
    for deciding about new work); a task already admitted counts only the spend, since
    its own reservation is part of the rest."""

    tenant: str
    period: str
    spent_usd: float
    budget_usd: float
    limit_ratio: float
    reserved_usd: float = 0.0

    @property
    def ratio(self) -> float:
        return self.spent_usd / self.budget_usd

    @property
    def committed_usd(self) -> float:
        return self.spent_usd + self.reserved_usd

    @property
    def remaining_usd(self) -> float:
        """Neither spent nor reserved."""
        return max(0.0, self.budget_usd - self.committed_usd)

    @property
    def limited(self) -> bool:
        """Near the budget: cost-limiting actions apply."""
        return self.committed_usd >= self.limit_ratio * self.budget_usd

    @property
    def exhausted(self) -> bool:
        return self.spent_usd >= self.budget_usd

    def stop_if_exhausted(self) -> None:
        """The check before each LLM call: only the spend counts, since the calling task
        was admitted and its own reservation is among the rest."""
        if self.exhausted:
            raise BudgetExhaustedError(self.message())

    def message(self) -> str:
        return (
            f"tenant {self.tenant!r} has used ${self.spent_usd:.4f} of its "
            f"${self.budget_usd:.2f} budget for {self.period}; new tasks are refused "
            f"until the next period or a budget increase"
        )

    def committed_message(self, cheapest_usd: float) -> str:
        return (
            f"tenant {self.tenant!r} has ${self.remaining_usd:.6f} of its "
            f"${self.budget_usd:.2f} budget for {self.period} neither spent "
            f"(${self.spent_usd:.4f}) nor reserved for its queued and running tasks "
            f"(${self.reserved_usd:.4f}), less than this task's expected cost of "
            f"${cheapest_usd:.6f} on the cheapest model; retry when some of them finish"
        )


@dataclass(frozen=True)
class Reservation:
    """What admitting a task reserves, for `TaskStore.admit`."""

    tenant: str
    ledger_key: str
    reservations_key: str
    budget_usd: float
    usd: float


class BudgetLedger:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._charge = redis.register_script(scripts.CHARGE)

    async def status(self, tenant: str, reservations: bool = True) -> BudgetStatus:
        """Spent in the current period and, unless told otherwise (for a task admitted
        already), reserved, read together."""
        async with self._redis.pipeline(transaction=True) as pipe:
            status_of = self.read_status(pipe, tenant, reservations)
            return status_of(iter(await pipe.execute()))

    def read_status(
        self, pipe: Pipeline, tenant: str, reservations: bool = True
    ) -> Callable[[Iterator[Any]], BudgetStatus]:
        """Queues the reads of `status` on the caller's pipeline, which reads more in the
        same round trip; the function returned takes the status from the replies, in the
        order queued."""
        period = current_period()
        pipe.hget(ledger_key(period), tenant)
        if reservations:
            pipe.hget(reservations_key(tenant), RESERVED_TOTAL)

        def status_of(replies: Iterator[Any]) -> BudgetStatus:
            spent = next(replies)
            held = float(next(replies) or 0.0) if reservations else 0.0
            return self.status_of(tenant, float(spent or 0.0), period, held)

        return status_of

    def status_of(
        self, tenant: str, spent_usd: float, period: str, reserved_usd: float = 0.0
    ) -> BudgetStatus:
        """The status for figures the caller read itself, as part of a step that had to
        read Redis anyway."""
        return BudgetStatus(
            tenant=tenant,
            period=period,
            spent_usd=spent_usd,
            budget_usd=self._settings.budget_for(tenant),
            limit_ratio=self._settings.budget_limit_ratio,
            reserved_usd=max(0.0, reserved_usd),
        )

    def reservation(self, status: BudgetStatus, usd: float) -> Reservation:
        return Reservation(
            tenant=status.tenant,
            ledger_key=ledger_key(status.period),
            reservations_key=reservations_key(status.tenant),
            budget_usd=status.budget_usd,
            usd=usd,
        )

    async def charge(
        self, tenant: str, task_id: str, usd: float, cache_key: str, reply: str, cache_ttl_s: int
    ) -> None:
        """Adds an LLM call's cost to the tenant's period and to the task record, takes it
        off the task's reservation and caches the call's reply (`reply`, as the response
        cache stores it, at `cache_key`), in one step."""
        await self._charge(
            keys=[
                ledger_key(current_period()),
                task_key(task_id),
                reservations_key(tenant),
                cache_key,
            ],
            args=[tenant, task_id, repr(usd), _LEDGER_TTL_S, reply, cache_ttl_s],
        )
