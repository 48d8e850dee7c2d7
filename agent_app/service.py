"""The task service: what submitting and reading a task does, whatever the transport."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from agent_app.admission import Limits, RecentRefusals
from agent_app.cache import ResultCache, result_cache_key
from agent_app.completions import Completions
from agent_app.cost import BudgetLedger, BudgetStatus
from agent_app.errors import ApiError
from agent_app.idempotency import IdempotencyConflictError, IdempotencyKeys
from agent_app.injection.detector import Detector
from agent_app.logging import get_logger
from agent_app.metrics import Metrics
from agent_app.queue import TaskQueue
from agent_app.records import ModelUsage, TaskRecord
from agent_app.redaction import redact
from agent_app.releases import assign_variant
from agent_app.selection import select_model
from agent_app.settings import Settings
from agent_app.tasks import TaskStore
from agent_app.usage import UsageBook, expected_costs
from agent_app.validation import IDEMPOTENCY_KEY, InjectionVerdict, TaskRequest

log = get_logger(__name__)

# Admission tries: each retry follows another submission's reservation, so contention ends
# quickly; past this many the client is asked to retry.
_ADMIT_TRIES = 8
# A task refused because the rest of the budget is reserved can be admitted once queued or
# running tasks settle for less than they reserved, or finish: seconds, usually.
_COMMITTED_RETRY_AFTER_S = 10


@dataclass(frozen=True)
class Submitted:
    """A submission's task, and how it went: 200 when final (answered from the result
    cache, or waited for) or replayed, 202 while queued."""

    record: TaskRecord
    status_code: int
    replayed: bool = False


@dataclass
class TaskService:
    settings: Settings
    metrics: Metrics
    redis: Redis
    store: TaskStore
    queue: TaskQueue
    ledger: BudgetLedger
    idempotency: IdempotencyKeys
    results: ResultCache
    completions: Completions
    detector: Detector
    usage: UsageBook
    refusals: RecentRefusals

    async def submit(
        self,
        tenant: str,
        body: TaskRequest,
        wait: float | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        self._check_limits(body, wait, idempotency_key)
        verdict = await self._screen(body.task)
        # From here on the task is without its credentials: it is stored (the record, the
        # session's history, the caches), and even a hash of it (the idempotency
        # fingerprint, the cache keys) could be matched against guesses.
        body, redactions = self._redact(body)
        task_id = uuid.uuid4().hex
        if idempotency_key is not None:
            earlier = await self._claim(tenant, idempotency_key, body, task_id)
            if earlier is not None:
                replayed = await self._replay(earlier, wait)
                if replayed is not None:
                    return replayed
                # The first request was refused or died before creating the task.
                task_id = earlier
        # Waiting is registered before the task is queued, so a worker cannot announce it
        # final unheard however fast it is.
        with self.completions.waiting(task_id) as waiter:
            # After the idempotency check, so replaying an accepted task still works at
            # 100% of the budget, or with the service at capacity.
            budget, observed = await self._budget(tenant)
            record, queued = await self._admit(
                task_id, tenant, body, verdict, budget, observed, redactions
            )
            if record.final:  # answered from the result cache
                return Submitted(record, 200)
            log.info("task accepted", task_id=task_id, tenant=tenant, model=record.model)
            if not wait:
                return Submitted(record, 202)
            found = await self.completions.wait_final(waiter, task_id, wait, queued)
        if found is None:  # expired or deleted while we waited
            raise _not_found(task_id)
        return Submitted(found, 200 if found.final else 202)

    async def get(self, tenant: str, task_id: str) -> TaskRecord:
        if len(task_id) > 64:
            raise ApiError(422, "task_id: at most 64 characters", "task_id")
        record = await self.store.get(task_id)
        # Another tenant's task is reported as missing, so ids reveal nothing.
        if record is None or record.tenant != tenant:
            raise _not_found(task_id)
        return record

    def _check_limits(self, body: TaskRequest, wait: float | None, key: str | None) -> None:
        s = self.settings
        if len(body.task) > s.max_task_chars:
            raise ApiError(422, f"task: longer than {s.max_task_chars} characters", "task")
        if wait is not None and wait > s.max_wait_s:
            raise ApiError(422, f"wait: at most {s.max_wait_s:g} seconds", "wait")
        if key is not None and not IDEMPOTENCY_KEY.match(key):
            raise ApiError(
                422, "Idempotency-Key: 1 to 128 printable ASCII characters", "Idempotency-Key"
            )

    async def _screen(self, task: str) -> InjectionVerdict:
        m = self.metrics
        verdict = await self.detector.screen(task)
        for reason in verdict.reasons:
            m.injection_flags.labels(**m.rel(reason=reason, action=verdict.action)).inc()
        if verdict.action == "reject":
            raise ApiError(
                422,
                "task: rejected as a likely prompt injection (" + ", ".join(verdict.reasons) + ")",
                "task",
                {"reasons": verdict.reasons, "score": verdict.score},
            )
        return verdict

    def _redact(self, body: TaskRequest) -> tuple[TaskRequest, int]:
        m = self.metrics
        cleaned = redact(body.task)
        for kind, n in cleaned.counts.items():
            m.redactions.labels(**m.rel(kind=kind, where="task")).inc(n)
        if not cleaned.total:
            return body, 0
        return body.model_copy(update={"task": cleaned.text}), cleaned.total

    async def _claim(self, tenant: str, key: str, body: TaskRequest, task_id: str) -> str | None:
        try:
            return await self.idempotency.claim(tenant, key, body, task_id)
        except IdempotencyConflictError:
            raise ApiError(
                409, "Idempotency-Key was already used with a different request", "Idempotency-Key"
            ) from None

    async def _replay(self, task_id: str, wait: float | None) -> Submitted | None:
        """The key's earlier task, waited for if asked; None if it was never created."""
        record = await self.store.get(task_id)
        if record is None:
            return None
        if wait:
            with self.completions.waiting(task_id) as waiter:
                found = await self.completions.wait_final(waiter, task_id, wait, queued=False)
            if found is None:  # expired or deleted while we waited
                raise _not_found(task_id)
            record = found
        return Submitted(record, 200, replayed=True)

    async def _budget(self, tenant: str) -> tuple[BudgetStatus, dict[str, ModelUsage]]:
        """The tenant's budget, and its observed usage to estimate the task's cost from,
        read in one round trip."""
        m = self.metrics
        async with self.redis.pipeline(transaction=True) as pipe:
            budget_of = self.ledger.read_status(pipe, tenant)
            usage_of = self.usage.read_usage(pipe, tenant, self.settings.models)
            replies = iter(await pipe.execute())
        budget, observed = budget_of(replies), usage_of(replies)
        m.budget_used.labels(**m.rel(tenant=tenant)).set(budget.ratio)
        if budget.exhausted:
            m.budget_actions.labels(**m.rel(action="reject")).inc()
            raise ApiError(429, budget.message(), headers={"Retry-After": str(_until_next_month())})
        return budget, observed

    async def _admit(
        self,
        task_id: str,
        tenant: str,
        body: TaskRequest,
        verdict: InjectionVerdict,
        budget: BudgetStatus,
        observed: dict[str, ModelUsage],
        redactions: int,
    ) -> tuple[TaskRecord, bool]:
        """The task queued with its expected cost reserved (`TaskStore.admit`), or answered
        from the result cache (final then); and whether this admission queued it (not an
        earlier try's). The model is chosen on the budget neither spent nor reserved; when
        another submission reserved part of it in between, the choice is made again on the
        new figures. Refused at once when the service is at capacity (`admission`)."""
        s, m = self.settings, self.metrics
        expected = expected_costs(s.models, observed, body.task, s.expected_completion_tokens)
        for attempt in range(_ADMIT_TRIES):
            record = self._new_record(task_id, tenant, body, verdict, budget, expected)
            if redactions:
                record = record.model_copy(update={"redactions": redactions})
            # A task without a session may be answered from a stored result: looked up in
            # the same step, on the first try only (the model chosen then is the one a
            # stored result would have been made with, as often as not).
            result_key = (
                result_cache_key(record.tenant, record.model, record.variant, record.request.task)
                if attempt == 0 and body.session_id is None
                else None
            )
            cost = record.selection.expected_cost_usd
            if cost > budget.remaining_usd and result_key is None:
                m.budget_actions.labels(**m.rel(action="reject")).inc()
                raise ApiError(
                    429,
                    budget.committed_message(cost),
                    headers={"Retry-After": str(_COMMITTED_RETRY_AFTER_S)},
                )
            admission = await self.store.admit(
                record,
                self.queue.stream,
                self.ledger.reservation(budget, cost),
                Limits.of(s),
                result_key,
            )
            if result_key is not None:
                self.results.count(hit=admission.answered is not None)
            if admission.answered is not None:
                self._count(record)
                m.tasks.labels(**m.rel(status="completed", variant=record.variant)).inc()
                log.info("task answered from the result cache", task_id=task_id, tenant=tenant)
                return admission.answered, False
            if admission.load is not None:
                refusal = admission.load.refusal(tenant, s.admission_max_latency_s)
                m.admission_refusals.labels(**m.rel(reason=admission.load.reason)).inc()
                self.refusals.remember(tenant, admission.load, refusal)
                raise refusal
            if admission.admitted:
                self._count(record)
                return record, not admission.existed
            if cost > budget.remaining_usd:
                # Checked after the result lookup, which needs no budget.
                m.budget_actions.labels(**m.rel(action="reject")).inc()
                raise ApiError(
                    429,
                    budget.committed_message(cost),
                    headers={"Retry-After": str(_COMMITTED_RETRY_AFTER_S)},
                )
            budget = self.ledger.status_of(
                tenant, admission.spent_usd, budget.period, admission.reserved_usd
            )
            if budget.exhausted:
                break
        m.budget_actions.labels(**m.rel(action="reject")).inc()
        message = (
            budget.message()
            if budget.exhausted
            else f"tenant {tenant!r}: the budget is being reserved by concurrent submissions; retry"
        )
        retry_after = _until_next_month() if budget.exhausted else _COMMITTED_RETRY_AFTER_S
        raise ApiError(429, message, headers={"Retry-After": str(retry_after)})

    def _count(self, record: TaskRecord) -> None:
        m = self.metrics
        m.model_selections.labels(**m.rel(model=record.model)).inc()
        m.tasks_submitted.labels(**m.rel(variant=record.variant)).inc()
        if record.budget_limited:
            m.budget_actions.labels(**m.rel(action="cheaper_model")).inc()

    def _new_record(
        self,
        task_id: str,
        tenant: str,
        body: TaskRequest,
        verdict: InjectionVerdict,
        budget: BudgetStatus,
        expected: dict[str, float],
    ) -> TaskRecord:
        s = self.settings
        selection = select_model(
            s.models,
            body.quality if body.quality is not None else s.default_quality,
            budget.remaining_usd,
            expected,
            limited=budget.limited,
            quality_relief=s.limited_quality_relief,
        )
        variant = assign_variant(s.experiment_name, tenant, s.experiment_variants)
        return TaskRecord(
            id=task_id,
            tenant=tenant,
            status="queued",
            request=body,
            session_id=body.session_id,
            model=selection.model,
            selection=selection,
            injection=verdict,
            variant=variant,
            budget_limited=budget.limited,
            created_at=time.time(),
        )


def _not_found(task_id: str) -> ApiError:
    return ApiError(404, f"task {task_id!r} not found", "task_id")


def _until_next_month() -> int:
    now = datetime.now(UTC)
    first = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return int((first - now).total_seconds()) + 1
