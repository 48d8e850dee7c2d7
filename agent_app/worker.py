"""Queue worker: consumes the task stream through a consumer group, at least once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import structlog
import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.trace import SpanProcessor
from redis.exceptions import RedisError, ResponseError

from agent_app.agent import Agent, AgentResult, TaskContext
from agent_app.cache import ResponseCache, ResultCache
from agent_app.cost import BudgetLedger, current_period
from agent_app.keys import ledger_key
from agent_app.limits import TenantSlots
from agent_app.llm import LLMClient
from agent_app.logging import get_logger
from agent_app.probes import Probes
from agent_app.queue import Entry, TaskQueue
from agent_app.records import Outcome, TaskRecord
from agent_app.routes import health
from agent_app.runtime import BreakerBoard, Runtime
from agent_app.selection import select_model
from agent_app.settings import Settings
from agent_app.tasks import TaskStore
from agent_app.tools import default_registry
from agent_app.tracing import tracer
from agent_app.usage import UsageBook, expected_costs

log = get_logger(__name__)

# A worker whose loop has not gone round for this long is reported stale.
_STALE_AFTER_S = 30


class Worker:
    def __init__(self, runtime: Runtime, consumer: str | None = None) -> None:
        s = runtime.settings
        self.runtime = runtime
        self.settings = s
        self.consumer = consumer or s.consumer_name or f"{socket.gethostname()}-{os.getpid()}"
        self.queue = TaskQueue(runtime.redis, s)
        self.store = TaskStore(runtime.redis, s.task_ttl_s)
        self.ledger = BudgetLedger(runtime.redis, s)
        self.board = BreakerBoard(runtime.redis, s)
        self.usage = UsageBook(runtime.redis)
        self._tracer = tracer(runtime.provider)
        self.llm = LLMClient(s, runtime.metrics, self._tracer, self.board.publish)
        self.http = httpx.AsyncClient(timeout=5.0, follow_redirects=False)
        self.agent = Agent(
            s,
            self.llm,
            ResponseCache(runtime.redis, runtime.metrics),
            ResultCache(runtime.metrics),
            default_registry(),
            self.ledger,
            runtime.redis,
            self.http,
            runtime.metrics,
            self._tracer,
        )
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self.slots = TenantSlots(
            runtime.redis, s.limited_tenant_concurrency, lease_s=max(5.0, s.claim_idle_ms / 500)
        )
        self.heartbeat = time.monotonic()
        self._claim_every = min(5.0, s.claim_idle_ms / 2000)
        self._touch_every = s.claim_idle_ms / 3000
        self._last_claim = self._last_touch = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        await self.queue.ensure_group()
        log.info("worker started", consumer=self.consumer, stream=self.queue.stream)
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            try:
                await self._poll()
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream or group vanished (e.g. Redis restarted without persistence).
                await self.queue.ensure_group()
            except RedisError as exc:
                log.warning("redis unavailable; retrying", error=type(exc).__name__)
                await asyncio.sleep(1)
        # Finish what is under way if the grace period allows; anything left stays pending
        # and is reclaimed by another worker.
        if self._inflight:
            log.info("worker draining", tasks=len(self._inflight))
            await asyncio.wait(
                list(self._inflight.values()), timeout=self.settings.shutdown_grace_s
            )
        for task in self._inflight.values():
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    async def _poll(self) -> None:
        s = self.settings
        now = time.monotonic()
        if now - self._last_touch >= self._touch_every:
            await self.queue.touch(self.consumer, list(self._inflight))
            self._last_touch = now
        free = s.worker_concurrency - len(self._inflight)
        if free > 0 and now - self._last_claim >= self._claim_every:
            self._last_claim = now
            reclaimed = await self.queue.reclaim(self.consumer, s.claim_idle_ms, free)
            if reclaimed:
                # A worker died or an attempt failed a claim period ago: worth seeing.
                log.info("reclaimed idle entries", entries=[entry_id for entry_id, _ in reclaimed])
                self.runtime.metrics.reclaimed.labels(**self.runtime.metrics.rel()).inc(
                    len(reclaimed)
                )
            for entry in reclaimed:
                self._spawn(entry)
            free = s.worker_concurrency - len(self._inflight)
        if free > 0:
            block_ms = int(min(1000, self._touch_every * 1000))
            for entry in await self.queue.read(self.consumer, free, block_ms):
                self._spawn(entry)
        else:
            await asyncio.wait(
                self._inflight.values(),
                timeout=self._touch_every,
                return_when=asyncio.FIRST_COMPLETED,
            )

    def _spawn(self, entry: Entry) -> None:
        entry_id, fields = entry
        if entry_id in self._inflight:
            return
        task = asyncio.create_task(self._handle(entry_id, fields))
        self._inflight[entry_id] = task
        gauge = self.runtime.metrics.inflight_tasks.labels(**self.runtime.metrics.rel())
        gauge.inc()

        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(entry_id, None)
            gauge.dec()

        task.add_done_callback(done)

    async def _handle(self, entry_id: str, fields: dict[str, str]) -> None:
        task_id = fields.get("task_id", "")
        with structlog.contextvars.bound_contextvars(task_id=task_id, tenant=fields.get("tenant")):
            try:
                await self._process(entry_id, task_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Left pending: another attempt follows once the entry is reclaimed.
                log.exception("task handling failed; it stays pending for a retry")

    async def _process(self, entry_id: str, task_id: str) -> None:
        s = self.settings
        m = self.runtime.metrics
        period = current_period()
        attempt, record, spent_usd = await self.store.start(
            task_id, self.consumer, ledger_key(period)
        )
        if record is None:
            log.info(
                "entry acknowledged without work",
                reason="already final" if attempt == -1 else "unknown task",
            )
            await self.queue.ack(entry_id)
            return
        tenant = record.tenant
        if attempt > s.max_attempts:
            await self._dead_letter(entry_id, task_id, record, attempt - 1)
            return
        started = time.perf_counter()
        # A task admitted earlier counts only the spend (its reservation is part of the
        # rest): it stops if the budget is spent, and gets the cost-limiting actions if
        # the tenant is near it now, whatever it was when the task was submitted.
        budget = self.ledger.status_of(tenant, spent_usd, period)
        if budget.exhausted:
            m.budget_actions.labels(**m.rel(action="stop")).inc()
            await self._final(
                entry_id, task_id, record, started, Outcome(status="failed", error=budget.message())
            )
            return
        ttl = s.cache_ttl_s
        limit: contextlib.AbstractAsyncContextManager[Any] = contextlib.nullcontext()
        if budget.limited:
            ttl = int(s.cache_ttl_s * s.limited_cache_ttl_factor)
            limit = self.slots.hold(tenant, task_id)
            m.budget_actions.labels(**m.rel(action="lower_concurrency")).inc()
            m.budget_actions.labels(**m.rel(action="longer_cache_ttl")).inc()
        try:
            async with limit:
                if budget.limited:
                    record = await self._cheaper_model(task_id, record)
                ctx = TaskContext(
                    task_id=task_id,
                    tenant=tenant,
                    session_id=record.session_id or task_id,
                    own_session=not record.session_id,
                    task=record.request.task,
                    model=record.model,
                    variant=record.variant,
                    cache_ttl_s=ttl,
                )
                log.info("task started", attempt=attempt, model=ctx.model)
                result = await self.agent.run(ctx)
        except Exception as exc:
            error = f"attempt {attempt}: {exc}"
            log.warning("task attempt failed", error=error)
            await self.store.update(task_id, Outcome(status="retrying", error=error))
            if attempt >= s.max_attempts:
                await self._dead_letter(entry_id, task_id, record, attempt, error)
            return
        await self._final(
            entry_id,
            task_id,
            record,
            started,
            Outcome(
                status=result.status,
                result=result.answer,
                error=result.error,
                steps=result.steps,
                tokens=result.tokens,
                redactions=result.redactions,
            ),
        )
        if result.status == "completed" and result.cached_calls == 0 and result.llm_calls:
            await self._observe(ctx, result)

    async def _cheaper_model(self, task_id: str, record: TaskRecord) -> TaskRecord:
        """A task chosen a model for before its tenant neared the budget (queued then, or
        waiting for the tenant's slot since) is moved to the model a task submitted now
        would get, if that is cheaper. Done once the slot is held, on the spend as it is
        then."""
        s, m = self.settings, self.runtime.metrics
        if record.budget_limited:
            return record  # chosen with the requirement relaxed already
        budget = await self.ledger.status(record.tenant, reservations=False)
        # Spent meanwhile: the check before the first call stops the task as it is.
        if not budget.limited or budget.exhausted:
            return record
        observed = await self.usage.read(record.tenant, s.models)
        expected = expected_costs(
            s.models, observed, record.request.task, s.expected_completion_tokens
        )
        selection = select_model(
            s.models,
            record.selection.required_quality,
            budget.remaining_usd,
            expected,
            limited=True,
            quality_relief=s.limited_quality_relief,
        )
        if expected[selection.model] >= expected[record.model]:
            return record
        change = Outcome(
            status="running", model=selection.model, selection=selection, budget_limited=True
        )
        await self.store.update(task_id, change)
        m.budget_actions.labels(**m.rel(action="cheaper_model")).inc()
        m.model_selections.labels(**m.rel(model=selection.model)).inc()
        log.info("queued task moved to a cheaper model", model=selection.model, was=record.model)
        return record.model_copy(
            update={"model": selection.model, "selection": selection, "budget_limited": True}
        )

    async def _observe(self, ctx: TaskContext, result: AgentResult) -> None:
        """Feeds the usage estimates (`usage`) with a task that ran in full; the task is
        final already, so a failure here is only logged."""
        try:
            await self.usage.observe(
                ctx.tenant,
                ctx.model,
                result.input_tokens,
                result.output_tokens,
                result.llm_calls,
                ctx.task,
            )
        except RedisError as exc:
            log.warning("task usage not recorded", error=type(exc).__name__)

    async def _final(
        self,
        entry_id: str,
        task_id: str,
        record: TaskRecord,
        started: float,
        outcome: Outcome,
    ) -> None:
        m = self.runtime.metrics
        status = outcome.status
        written = await self.queue.finish(
            entry_id, task_id, record.tenant, outcome.model_copy(update={"worker": self.consumer})
        )
        if written:
            m.tasks.labels(**m.rel(status=status, variant=record.variant)).inc()
            m.task_duration.labels(**m.rel(status=status)).observe(time.perf_counter() - started)
            log.info("task finished", status=status)
        else:
            log.info("task already had a final result; duplicate delivery ignored")

    async def _dead_letter(
        self,
        entry_id: str,
        task_id: str,
        record: TaskRecord,
        attempts: int,
        error: str | None = None,
    ) -> None:
        m = self.runtime.metrics
        # Attempts cut short (a worker killed mid-task) leave no error of their own.
        error = error or record.error or f"{attempts} attempts started and none finished"
        written = await self.queue.dead_letter(
            entry_id,
            task_id,
            record.tenant,
            {
                "task_id": task_id,
                "tenant": record.tenant,
                "error": error,
                "attempts": str(attempts),
            },
        )
        await self.runtime.redis.publish(self.queue.done_channel, task_id)
        if not written:
            log.info("task already had a final result; not dead-lettered")
            return
        m.dead_letters.labels(**m.rel()).inc()
        m.tasks.labels(**m.rel(status="dead_lettered", variant=record.variant)).inc()
        log.error("task dead-lettered", attempts=attempts, error=error)

    def alive(self) -> bool:
        """The loop went round lately (it blocks on the stream for a second at most)."""
        return time.monotonic() - self.heartbeat <= _STALE_AFTER_S

    async def circuit_problem(self) -> str | None:
        return None if self.llm.any_circuit_usable() else "every LLM circuit is open"

    async def aclose(self) -> None:
        await self.llm.aclose()
        await self.http.aclose()


def health_app(worker: Worker) -> FastAPI:
    """The worker's own small HTTP server, so probes and scraping work for it too."""
    app = FastAPI(title="agent-app worker", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.probes = Probes(worker.runtime, worker.queue, worker.circuit_problem, worker.alive)
    app.include_router(health.router)
    return app


class _EmbeddedServer(uvicorn.Server):
    """uvicorn would take over SIGTERM; here the worker loop owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_worker(settings: Settings, span_processor: SpanProcessor | None = None) -> None:
    runtime = Runtime.build(settings, "worker", span_processor)
    worker = Worker(runtime)
    stop = asyncio.Event()
    config = uvicorn.Config(
        health_app(worker),
        host=settings.host,
        port=settings.worker_port,
        log_config=None,
        access_log=False,
    )
    server = _EmbeddedServer(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http_task = asyncio.create_task(server.serve())
    try:
        await worker.run(stop)
    finally:
        server.should_exit = True
        await http_task
        await worker.aclose()
        await runtime.aclose()
