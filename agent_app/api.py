"""The HTTP API: the application, its parts wired once, and its lifetime; and, on a port
of their own that no Service exposes, its metrics and the queue's backlog."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.trace import SpanProcessor

from agent_app.admission import RecentRefusals
from agent_app.auth import Authenticator
from agent_app.cache import ResultCache
from agent_app.completions import Completions
from agent_app.cost import BudgetLedger
from agent_app.errors import install_error_handlers
from agent_app.idempotency import IdempotencyKeys
from agent_app.injection.detector import build_detector
from agent_app.logging import get_logger
from agent_app.middleware import BodyLimit, RefusalGate, ReleaseAndInflight
from agent_app.probes import Probes
from agent_app.queue import TaskQueue
from agent_app.routes import health, metrics, tasks
from agent_app.runtime import BreakerBoard, Runtime
from agent_app.servers import EmbeddedServer, server_config
from agent_app.service import TaskService
from agent_app.settings import Settings
from agent_app.tasks import TaskStore
from agent_app.usage import UsageBook

log = get_logger(__name__)


def create_app(settings: Settings, span_processor: SpanProcessor | None = None) -> FastAPI:
    runtime = Runtime.build(settings, "api", span_processor)
    store = TaskStore(runtime.redis, settings.task_ttl_s)
    queue = TaskQueue(runtime.redis, settings)
    completions = Completions(runtime.redis, queue.done_channel, store)
    refusals = RecentRefusals()
    authenticator = Authenticator(settings.api_keys_sha256)
    service = TaskService(
        settings=settings,
        metrics=runtime.metrics,
        redis=runtime.redis,
        store=store,
        queue=queue,
        ledger=BudgetLedger(runtime.redis, settings),
        idempotency=IdempotencyKeys(runtime.redis, settings.idempotency_ttl_s),
        results=ResultCache(runtime.metrics),
        completions=completions,
        detector=build_detector(settings),
        usage=UsageBook(runtime.redis),
        refusals=refusals,
    )
    circuits = functools.partial(
        _every_circuit_open, BreakerBoard(runtime.redis, settings), len(settings.models)
    )
    app = FastAPI(
        title="agent-app",
        version=settings.release_version,
        lifespan=_lifespan(runtime, queue, completions),
    )
    app.state.runtime = runtime
    app.state.service = service
    app.state.probes = Probes(runtime, queue, circuits)
    app.state.authenticator = authenticator
    # Innermost: the body is read (and bounded) by then, so the connection stays usable.
    app.add_middleware(
        RefusalGate,
        refusals=refusals,
        authenticator=authenticator,
        metrics=runtime.metrics,
        path=tasks.router.prefix,
    )
    app.add_middleware(
        BodyLimit, limit=settings.max_body_bytes, read_timeout_s=settings.body_read_timeout_s
    )
    # Added last, so it is outside the body limit and its 413 carries the headers too.
    m = runtime.metrics
    app.add_middleware(
        ReleaseAndInflight,
        gauge=m.inflight_requests.labels(**m.rel()),
        headers=runtime.release.headers(),
    )
    install_error_handlers(app)
    app.include_router(tasks.router)
    app.include_router(health.router)
    return app


def create_metrics_app(probes: Probes) -> FastAPI:
    """What Prometheus alone reads: the process's series, and the queue's backlog, which
    the API exports for every replica (one scrape target, see `metrics.QueueMetrics`)."""
    app = FastAPI(title="agent-app metrics", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.probes = probes
    app.include_router(metrics.router)
    app.include_router(metrics.queue_router)
    return app


async def serve_api(settings: Settings) -> None:
    """The API on `AGENT_PORT` and its metrics on `AGENT_METRICS_PORT`, in one process;
    the API's server owns the signals, and the metrics server stops after it."""
    app = create_app(settings)
    metrics_server = EmbeddedServer(
        server_config(create_metrics_app(app.state.probes), settings, settings.metrics_port)
    )
    metrics_task = asyncio.create_task(metrics_server.serve())
    try:
        await uvicorn.Server(server_config(app, settings, settings.port)).serve()
    finally:
        metrics_server.should_exit = True
        await metrics_task


async def _every_circuit_open(board: BreakerBoard, models: int) -> str | None:
    # Read from Redis, where every replica's workers publish the circuits they opened.
    open_models = await board.open_models()
    if len(open_models) == models:
        return "every LLM circuit is open: " + ", ".join(open_models)
    return None


def _lifespan(
    runtime: Runtime, queue: TaskQueue, completions: Completions
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    settings = runtime.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await queue.ensure_group()
        except Exception as exc:
            # Readiness reports it; the API still starts so liveness can succeed.
            if not runtime.redis_faults.failed(exc):
                log.warning("could not create the consumer group yet", error=type(exc).__name__)
        if not settings.api_keys_sha256:
            log.warning("no API keys configured: every task request will be refused")
        log.info(
            "api started", port=settings.port, tenants=len(set(settings.api_keys_sha256.values()))
        )
        listener = asyncio.create_task(completions.listen())
        yield
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await runtime.aclose()

    return lifespan
