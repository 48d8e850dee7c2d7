"""The task service: what submitting and reading a task does, whatever the transport."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from agent_app.cache import ResultCache, result_cache_key
from agent_app.completions import Completions
from agent_app.cost import BudgetLedger, BudgetStatus
from agent_app.errors import ApiError
from agent_app.idempotency import IdempotencyConflictError, IdempotencyKeys
from agent_app.injection.detector import Detector
from agent_app.logging import get_logger
from agent_app.metrics import Metrics
from agent_app.queue import TaskQueue
from agent_app.records import TaskRecord
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
    store: TaskStore
    queue: TaskQueue
    ledger: BudgetLedger
    idempotency: IdempotencyKeys
    results: ResultCache
    completions: Completions
    detector: Detector
    usage: UsageBook

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
        # After the idempotency check, so replaying an accepted task still works at 100%.
        budget = await self._budget(tenant)
        record = await self._admit(task_id, tenant, body, verdict, budget, redactions)
        if record.final:  # answered from the result cache
            return Submitted(record, 200)
        log.info("task accepted", task_id=task_id, tenant=tenant, model=record.model)
        if not wait:
            return Submitted(record, 202)
        found = await self._wait(task_id, wait, queued=True)
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
            record = await self._wait(task_id, wait)
        return Submitted(record, 200, replayed=True)

    async def _wait(self, task_id: str, wait: float, queued: bool = False) -> TaskRecord:
        record = await self.completions.wait_final(task_id, wait, queued)
        if record is None:  # expired or deleted while we waited
            raise _not_found(task_id)
        return record

    async def _budget(self, tenant: str) -> BudgetStatus:
        m = self.metrics
        budget = await self.ledger.status(tenant)
        m.budget_used.labels(**m.rel(tenant=tenant)).set(budget.ratio)
        if budget.exhausted:
            m.budget_actions.labels(**m.rel(action="reject")).inc()
            raise ApiError(429, budget.message(), headers={"Retry-After": str(_until_next_month())})
        return budget

    async def _admit(
        self,
        task_id: str,
        tenant: str,
        body: TaskRequest,
        verdict: InjectionVerdict,
        budget: BudgetStatus,
        redactions: int,
    ) -> TaskRecord:
        """The task queued with its expected cost reserved (`TaskStore.admit`), or answered
        from the result cache (final then). The model is chosen on the budget neither
        spent nor reserved; when another submission reserved part of it in between, the
        choice is made again on the new figures."""
        s, m = self.settings, self.metrics
        expected = expected_costs(
            s.models,
            await self.usage.read(tenant, s.models),
            body.task,
            s.expected_completion_tokens,
        )
        for attempt in range(_ADMIT_TRIES):
            record = self._new_record(task_id, tenant, body, verdict, budget, expected)
            if redactions:
                record = record.model_copy(update={"redactions": redactions})
            if attempt == 0 and body.session_id is None:
                answered = await self._answer_from_results(record)
                if answered is not None:
                    self._count(record)
                    return answered
            cost = record.selection.expected_cost_usd
            if cost > budget.remaining_usd:
                m.budget_actions.labels(**m.rel(action="reject")).inc()
                raise ApiError(
                    429,
                    budget.committed_message(cost),
                    headers={"Retry-After": str(_COMMITTED_RETRY_AFTER_S)},
                )
            admission = await self.store.admit(
                record, self.queue.stream, self.ledger.reservation(budget, cost)
            )
            if admission.admitted:
                self._count(record)
                return record
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

    async def _answer_from_results(self, record: TaskRecord) -> TaskRecord | None:
        """The task answered from a stored result, final at once, as a waited-for task that
        finished in time; None when there is none to answer it from."""
        m = self.metrics
        key = result_cache_key(record.tenant, record.model, record.variant, record.request.task)
        now = time.time()
        final = record.model_copy(
            update={"status": "completed", "created_at": now, "finished_at": now}
        )
        answered = await self.store.create_from_result(final, key)
        self.results.count(hit=answered is not None)
        if answered is not None:
            m.tasks.labels(**m.rel(status="completed", variant=record.variant)).inc()
            log.info("task answered from the result cache", task_id=record.id, tenant=record.tenant)
        return answered


def _not_found(task_id: str) -> ApiError:
    return ApiError(404, f"task {task_id!r} not found", "task_id")


def _until_next_month() -> int:
    now = datetime.now(UTC)
    first = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return int((first - now).total_seconds()) + 1
