"""Queue worker: consumes the task stream through a consumer group, at least once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Sequence
from typing import Any

import httpx
import structlog
from fastapi import FastAPI
from opentelemetry.sdk.trace import SpanProcessor
from redis.exceptions import RedisError, ResponseError

from agent_app.agent import Agent, TaskContext
from agent_app.cache import ResponseCache, ResultCache
from agent_app.cost import BudgetLedger, current_period
from agent_app.keys import ledger_key
from agent_app.limits import TenantSlots
from agent_app.llm import LLMClient
from agent_app.logging import get_logger
from agent_app.probes import Probes
from agent_app.queue import Entry, FinalWrite, TaskQueue
from agent_app.records import Outcome, TaskRecord
from agent_app.routes import health, metrics
from agent_app.runtime import BreakerBoard, Runtime
from agent_app.selection import select_model
from agent_app.servers import EmbeddedServer, server_config
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
            ResponseCache(runtime.metrics),
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
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        # Notes when the stop came, so the grace counts from the signal, not from when
        # the loop next looks.
        stopping = asyncio.create_task(self._stopped_at(stop))
        try:
            if await self._ensure_group(stopping):
                log.info("worker started", consumer=self.consumer, stream=self.queue.stream)
            while not stop.is_set():
                self.heartbeat = time.monotonic()
                try:
                    await self._poll(stopping)
                    self.runtime.redis_faults.succeeded()
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    # The stream or group vanished (e.g. Redis restarted without persistence).
                    await self.queue.ensure_group()
                except RedisError as exc:
                    self._redis_failed(exc)
                    await asyncio.wait([stopping], timeout=1)
            await self._drain(await stopping)
        finally:
            stopping.cancel()

    async def _stopped_at(self, stop: asyncio.Event) -> float:
        await stop.wait()
        log.info("worker stopping: no new entries taken", inflight=len(self._inflight))
        return time.monotonic()

    async def _ensure_group(self, stopping: asyncio.Task[float]) -> bool:
        """Waits for Redis at start: an outage or refused credentials are reported (on
        `/ready` and in the log) instead of ending the process with a traceback."""
        while not stopping.done():
            try:
                await self.queue.ensure_group()
                self.runtime.redis_faults.succeeded()
                return True
            except RedisError as exc:
                self._redis_failed(exc)
                await asyncio.wait([stopping], timeout=2)
        return False

    def _redis_failed(self, exc: RedisError) -> None:
        if not self.runtime.redis_faults.failed(exc):
            log.warning("redis unavailable; retrying", error=type(exc).__name__)

    async def _drain(self, stopped_at: float) -> None:
        """Finishes what is under way within the grace, counted from the stop. The claims
        of the running entries are refreshed throughout: an entry left idle for the claim
        idle time would be taken and run a second time by another worker while this one
        still runs it. What the grace cuts short is cancelled and released, so another
        worker takes it at once rather than a claim idle time later."""
        deadline = stopped_at + self.settings.shutdown_grace_s
        if self._inflight:
            log.info("worker draining", tasks=len(self._inflight))
        while self._inflight and (remaining := deadline - time.monotonic()) > 0:
            self.heartbeat = time.monotonic()
            await self._touch()
            await asyncio.wait(
                list(self._inflight.values()), timeout=min(self._touch_every, remaining)
            )
        abandoned = list(self._inflight)
        for task in self._inflight.values():
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        if abandoned:
            log.warning("grace over; unfinished tasks cancelled and released", entries=abandoned)
            await self._release(abandoned)

    async def _touch(self) -> None:
        try:
            await self.queue.touch(self.consumer, list(self._inflight))
            self._last_touch = time.monotonic()
        except RedisError as exc:
            # The next refresh would be a third of the claim idle time away; try again
            # sooner, while the entries are still far from being taken.
            self._redis_failed(exc)
            self._last_touch = (
                time.monotonic() - self._touch_every + min(1.0, self._touch_every / 2)
            )

    async def _release(self, entry_ids: list[str]) -> None:
        try:
            await self.queue.release(self.consumer, entry_ids, self.settings.claim_idle_ms)
        except RedisError as exc:
            # Still pending: reclaimed after the claim idle time instead.
            self._redis_failed(exc)

    async def _take(self, entries: list[Entry]) -> None:
        if not self._stop.is_set():
            for entry in entries:
                self._spawn(entry)
            return
        # Read while the stop was coming in: left for another worker, unstarted.
        ids = [entry_id for entry_id, _ in entries]
        if ids:
            log.info("entries released unstarted: the worker is stopping", entries=ids)
            await self._release(ids)

    async def _poll(self, stopping: asyncio.Task[float]) -> None:
        s = self.settings
        now = time.monotonic()
        if now - self._last_touch >= self._touch_every:
            await self._touch()
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
            await self._take(reclaimed)
            free = s.worker_concurrency - len(self._inflight)
        # Never longer than until the next refresh is due.
        until_touch = max(0.0, self._last_touch + self._touch_every - time.monotonic())
        if free > 0 and not self._stop.is_set():
            block_ms = max(1, int(min(1.0, until_touch) * 1000))
            await self._take(await self.queue.read(self.consumer, free, block_ms))
        else:
            # Every slot busy: woken by a finished task, a due refresh or the stop.
            await asyncio.wait(
                [*self._inflight.values(), stopping],
                timeout=until_touch,
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
                log.warning("task cut short by the end of the grace; released for a retry")
                raise
            except Exception:
                # Left pending: another attempt follows once the entry is reclaimed.
                log.exception("task handling failed; it stays pending for a retry")

    async def _process(self, entry_id: str, task_id: str) -> None:
        s = self.settings
        m = self.runtime.metrics
        period = current_period()
        attempt, record, spent_usd, shared_open = await self.store.start(
            task_id, self.consumer, ledger_key(period), [spec.name for spec in s.models]
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
                    # The slot may have taken a while: circuits may have opened since.
                    shared_open = frozenset(await self.board.open_models())
                ctx = TaskContext(
                    task_id=task_id,
                    tenant=tenant,
                    session_id=record.session_id or task_id,
                    own_session=not record.session_id,
                    task=record.request.task,
                    model=record.model,
                    variant=record.variant,
                    cache_ttl_s=ttl,
                    redactions=record.redactions or 0,
                    fallbacks=tuple(
                        c.model
                        for c in record.selection.candidates
                        if c.meets_quality and c.fits_budget and c.model != record.model
                    ),
                )
                self._avoid_open_circuit(ctx, shared_open)
                log.info("task started", attempt=attempt, model=ctx.model)
                result = await self.agent.run(ctx)
        except Exception as exc:
            error = f"attempt {attempt}: {exc}"
            log.warning("task attempt failed", error=error)
            await self.store.update(task_id, Outcome(status="retrying", error=error))
            if attempt >= s.max_attempts:
                await self._dead_letter(entry_id, task_id, record, attempt, error)
            return
        writes = list(result.writes)
        if result.status == "completed" and result.cached_calls == 0 and result.llm_calls:
            # A task that ran in full feeds the usage estimates (`usage`).
            writes.append(
                self.usage.observation(
                    ctx.tenant,
                    ctx.model,
                    result.input_tokens,
                    result.output_tokens,
                    result.llm_calls,
                    ctx.task,
                )
            )
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
                model=ctx.model if ctx.model != record.model else None,
            ),
            writes,
        )

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

    def _avoid_open_circuit(self, ctx: TaskContext, shared_open: frozenset[str]) -> None:
        """Starts the task on a fallback when its model's circuit is open here or, as
        another replica's workers published it, in Redis (`shared_open`)."""

        def usable(model: str) -> bool:
            return model not in shared_open and self.llm.circuit_usable(model)

        if usable(ctx.model):
            return
        fallback = next((m for m in ctx.fallbacks if usable(m)), None)
        if fallback is not None:
            log.warning("circuit open; starting on a fallback", model=ctx.model, fallback=fallback)
            ctx.fallbacks = tuple(m for m in ctx.fallbacks if m != fallback)
            ctx.model = fallback

    async def _final(
        self,
        entry_id: str,
        task_id: str,
        record: TaskRecord,
        started: float,
        outcome: Outcome,
        writes: Sequence[FinalWrite] = (),
    ) -> None:
        m = self.runtime.metrics
        status = outcome.status
        written = await self.queue.finish(
            entry_id,
            task_id,
            record.tenant,
            outcome.model_copy(update={"worker": self.consumer}),
            writes,
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
    app.state.probes = Probes(
        worker.runtime,
        worker.queue,
        worker.circuit_problem,
        worker.alive,
        refresh=worker.llm.refresh_circuit_states,
    )
    app.include_router(health.router)
    # Only the worker's own series: the queue's backlog is the API's to export.
    app.include_router(metrics.router)
    return app


async def serve_worker(settings: Settings, span_processor: SpanProcessor | None = None) -> None:
    runtime = Runtime.build(settings, "worker", span_processor)
    worker = Worker(runtime)
    stop = asyncio.Event()
    # The worker loop, not uvicorn, owns shutdown.
    server = EmbeddedServer(server_config(health_app(worker), settings, settings.worker_port))
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
