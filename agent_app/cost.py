"""Prices, per-call cost and the per-tenant budget ledger (one Redis hash per period)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from agent_app.keys import ledger_key
from agent_app.settings import ModelSpec, Settings

_LEDGER_TTL_S = 40 * 24 * 3600  # outlives its month, then Redis drops it


def call_cost(spec: ModelSpec, prompt_tokens: int, completion_tokens: int) -> float:
    return (
        prompt_tokens * spec.input_usd_per_1k + completion_tokens * spec.output_usd_per_1k
    ) / 1000


def current_period(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m")


@dataclass(frozen=True)
class BudgetStatus:
    tenant: str
    period: str
    spent_usd: float
    budget_usd: float
    limit_ratio: float

    @property
    def ratio(self) -> float:
        return self.spent_usd / self.budget_usd

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.budget_usd - self.spent_usd)

    @property
    def limited(self) -> bool:
        """Near the budget: cost-limiting actions apply."""
        return self.ratio >= self.limit_ratio

    @property
    def exhausted(self) -> bool:
        return self.spent_usd >= self.budget_usd

    def message(self) -> str:
        return (
            f"tenant {self.tenant!r} has used ${self.spent_usd:.4f} of its "
            f"${self.budget_usd:.2f} budget for {self.period}; new tasks are refused "
            f"until the next period or a budget increase"
        )


class BudgetLedger:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings

    async def status(self, tenant: str) -> BudgetStatus:
        period = current_period()
        raw = await self._redis.hget(ledger_key(period), tenant)
        return self.status_of(tenant, float(raw or 0.0), period)

    def status_of(self, tenant: str, spent_usd: float, period: str) -> BudgetStatus:
        """The status for a spend the caller read from `ledger_key(period)` itself, as part
        of a step that had to read Redis anyway."""
        return BudgetStatus(
            tenant=tenant,
            period=period,
            spent_usd=spent_usd,
            budget_usd=self._settings.budget_for(tenant),
            limit_ratio=self._settings.budget_limit_ratio,
        )

    def charge(self, transaction: Pipeline, tenant: str, usd: float, task_key: str) -> None:
        """Adds spend to the tenant's period and to the task record, as part of the caller's
        transaction (which also caches the call that cost it)."""
        key = ledger_key(current_period())
        transaction.hincrbyfloat(key, tenant, usd)
        transaction.expire(key, _LEDGER_TTL_S)
        transaction.hincrbyfloat(task_key, "cost_usd", usd)
