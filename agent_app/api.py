"""The HTTP API: task submission and lookup, probes and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace import SpanProcessor
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics import Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_app.auth import Authenticator, key_from_headers
from agent_app.cache import ResultCache, result_cache_key
from agent_app.cost import BudgetLedger
from agent_app.logging import get_logger
from agent_app.queue import TaskQueue
from agent_app.releases import assign_variant
from agent_app.runtime import BreakerBoard, Runtime, text
from agent_app.selection import estimate_tokens, select_model
from agent_app.settings import Settings
from agent_app.tasks import FINAL_STATUSES, TaskStore, completion
from agent_app.validation import IDEMPOTENCY_KEY, TaskRequest, check_injection

log = get_logger(__name__)

_PUBLIC_FIELDS = (
    "id",
    "status",
    "result",
    "error",
    "steps",
    "tokens",
    "cost_usd",
    "model",
    "selection",
    "injection",
    "attempts",
    "variant",
    "session_id",
    "redactions",
    "created_at",
    "finished_at",
    "cached",
)

# A waiting request re-reads its task at least this often, so a completion message lost
# while the subscription reconnects (or never sent by an older worker) delays it only so long.
_RECHECK_S = 0.5


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.extra = extra or {}
        self.headers = headers


class _BodyLimit:
    """Refuses bodies over the limit before they are parsed, chunked ones included."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body.extend(message.get("body", b""))
            more = message.get("more_body", False)
            if len(body) > self.limit:
                response = JSONResponse(
                    {"error": f"request body larger than {self.limit} bytes", "field": "body"},
                    status_code=413,
                )
                await response(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _ReleaseAndInflight:
    """Release headers on every response and the in-flight gauge, as plain ASGI: the
    decorator form (BaseHTTPMiddleware) runs each request through an extra task and
    memory streams, which the profile showed as a large share of the API's time."""

    def __init__(self, app: ASGIApp, gauge: Gauge, headers: dict[str, str]) -> None:
        self.app = app
        self.gauge = gauge
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(self.headers)
            await send(message)

        self.gauge.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self.gauge.dec()


class _Waiter:
    """One request waiting for a task: woken by its completion message, which hands over
    the final record when it carries one."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.record: dict[str, Any] | None = None

    def take(self) -> dict[str, Any] | None:
        record, self.record = self.record, None
        return record


class _Completions:
    """Wakes requests waiting for a task (`?wait=`) when a worker announces on the task
    done channel that it is final. Polling the record instead cost a Redis round trip per
    waiting request every 50 ms and added up to 50 ms to every answer."""

    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._waiters: dict[str, set[_Waiter]] = {}

    async def listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    # Whatever finished while unsubscribed is found by re-reading.
                    self._wake_all()
                    async for message in pubsub.listen():
                        self._deliver(message["data"])
            except Exception as exc:
                # Never give up: without the listener every wait degrades to re-reading.
                log.warning("task done channel unavailable; retrying", error=type(exc).__name__)
                await asyncio.sleep(1)

    def _deliver(self, message: str) -> None:
        # Every replica hears every task: only a waited-for one is worth decoding.
        task_id = message.partition("\n")[0]
        waiters = self._waiters.get(task_id)
        if not waiters:
            return
        record = completion(message)[1]
        for waiter in waiters:
            waiter.record = record
            waiter.event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()

    @contextlib.contextmanager
    def waiting(self, task_id: str) -> Iterator[_Waiter]:
        waiter = _Waiter()
        self._waiters.setdefault(task_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters[task_id]
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[task_id]


_UNDECODABLE_BODY = "There was an error parsing the body"


def _error_body(exc: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": exc.message}
    if exc.field:
        body["field"] = exc.field
    body.update(exc.extra)
    return body


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "header", "path"):
        parts = parts[1:] or parts
    # A JSON syntax error is located by character offset, which names no field.
    if not parts or isinstance(parts[0], int):
        return "body"
    return ".".join(str(p) for p in parts)


async def _current_tenant(
    request: Request,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> str:
    key = key_from_headers(x_api_key, authorization)
    if key is None:
        raise ApiError(
            401,
            "missing API key: send it in the X-API-Key header or as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    authenticator: Authenticator = request.app.state.authenticator
    found = authenticator.tenant_for(key)
    if found is None:
        raise ApiError(403, "API key not recognised")
    return found


CurrentTenant = Annotated[str, Depends(_current_tenant)]


def create_app(settings: Settings, span_processor: SpanProcessor | None = None) -> FastAPI:
    runtime = Runtime.build(settings, "api", span_processor)
    m = runtime.metrics
    store = TaskStore(runtime.redis, settings.task_ttl_s)
    queue = TaskQueue(runtime.redis, settings)
    ledger = BudgetLedger(runtime.redis, settings)
    board = BreakerBoard(runtime.redis, settings)
    authenticator = Authenticator(settings.api_keys_sha256)
    completions = _Completions(runtime.redis, settings.task_done_channel)
    results = ResultCache(m)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await queue.ensure_group()
        except Exception as exc:
            # Readiness reports it; the API still starts so liveness can succeed.
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

    app = FastAPI(title="agent-app", version=settings.release_version, lifespan=lifespan)
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    # Added last, so it is outside the body limit and its 413 carries the headers too.
    app.add_middleware(
        _ReleaseAndInflight,
        gauge=m.inflight_requests.labels(**m.rel()),
        headers=runtime.release.headers(),
    )

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(_error_body(exc), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": _field_name(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()
        ]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return JSONResponse({"error": f"invalid request: {summary}", "fields": fields}, 422)

    @app.exception_handler(RedisError)
    async def redis_error(_: Request, exc: RedisError) -> JSONResponse:
        # The client did nothing wrong and may retry; readiness already reports the cause.
        log.warning("redis unavailable", error=type(exc).__name__)
        return JSONResponse(
            {"error": "task store temporarily unavailable; retry later"},
            503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _UNDECODABLE_BODY:
            # FastAPI's answer when the JSON decoder gives up on the body as a whole (not
            # UTF-8, nested past the recursion limit, an integer over 4,300 digits), where
            # a syntax error gets a 422 naming `body`: name it here too.
            return JSONResponse(
                {"error": "the body is not JSON this API can decode", "field": "body"}, 400
            )
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    @app.post("/v1/tasks", status_code=202)
    async def submit(
        body: TaskRequest,
        tenant: CurrentTenant,
        response: Response,
        wait: Annotated[
            float | None, Query(ge=0, description="Seconds to wait for the result.")
        ] = None,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        if len(body.task) > settings.max_task_chars:
            raise ApiError(422, f"task: longer than {settings.max_task_chars} characters", "task")
        if wait is not None and wait > settings.max_wait_s:
            raise ApiError(422, f"wait: at most {settings.max_wait_s:g} seconds", "wait")
        if idempotency_key is not None and not IDEMPOTENCY_KEY.match(idempotency_key):
            raise ApiError(
                422, "Idempotency-Key: 1 to 128 printable ASCII characters", "Idempotency-Key"
            )
        verdict = check_injection(
            body.task, settings.injection_flag_score, settings.injection_reject_score
        )
        for reason in verdict.reasons:
            m.injection_flags.labels(**m.rel(reason=reason, action=verdict.action)).inc()
        if verdict.action == "reject":
            raise ApiError(
                422,
                "task: rejected as a likely prompt injection (" + ", ".join(verdict.reasons) + ")",
                "task",
                {"reasons": verdict.reasons, "score": verdict.score},
            )
        task_id = uuid.uuid4().hex
        if idempotency_key is not None:
            fingerprint = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
            idem = f"agent:idem:{tenant}:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"
            claimed = await runtime.redis.set(
                idem, f"{task_id}:{fingerprint}", nx=True, ex=settings.idempotency_ttl_s
            )
            if not claimed:
                stored = await runtime.redis.get(idem)
                existing_id, _, existing_fp = text(stored or "").partition(":")
                if existing_fp != fingerprint:
                    raise ApiError(
                        409,
                        "Idempotency-Key was already used with a different request",
                        "Idempotency-Key",
                    )
                record = await store.get(existing_id)
                if record is not None:
                    response.status_code = 200
                    response.headers["Idempotent-Replayed"] = "true"
                    return await _maybe_wait(existing_id, wait, response)
                # The first request was refused or died before creating the task.
                task_id = existing_id

        # After the idempotency check, so replaying an accepted task still works at 100%.
        budget = await ledger.status(tenant)
        m.budget_used.labels(**m.rel(tenant=tenant)).set(budget.ratio)
        if budget.exhausted:
            m.budget_actions.labels(**m.rel(action="reject")).inc()
            raise ApiError(429, budget.message(), headers={"Retry-After": str(_until_next_month())})

        if budget.limited:
            m.budget_actions.labels(**m.rel(action="cheaper_model")).inc()
        required = body.quality if body.quality is not None else settings.default_quality
        selection = select_model(
            settings.models,
            required,
            budget.remaining_usd,
            estimate_tokens(body.task) + 200,
            settings.expected_completion_tokens,
            limited=budget.limited,
            quality_relief=settings.limited_quality_relief,
        )
        m.model_selections.labels(**m.rel(model=selection.model)).inc()
        variant = assign_variant(settings.experiment_name, tenant, settings.experiment_variants)
        m.tasks_submitted.labels(**m.rel(variant=variant)).inc()
        fields = {
            "tenant": tenant,
            "request": body.model_dump(),
            "session_id": body.session_id,
            "model": selection.model,
            "selection": selection.to_dict(),
            "injection": {
                "action": verdict.action,
                "score": verdict.score,
                "reasons": verdict.reasons,
            },
            "variant": variant,
            "budget_limited": budget.limited,
        }
        response.headers["Location"] = f"/v1/tasks/{task_id}"
        if body.session_id is None:
            key = result_cache_key(tenant, selection.model, variant, body.task)
            answered = await store.create_from_result(task_id, fields, key)
            results.count(hit=answered is not None)
            if answered is not None:
                # Final already, as a waited-for task that finished in time.
                response.status_code = 200
                m.tasks.labels(**m.rel(status="completed", variant=variant)).inc()
                log.info("task answered from the result cache", task_id=task_id, tenant=tenant)
                return _public(answered)
        await store.create(task_id, fields, stream=queue.stream)
        log.info("task accepted", task_id=task_id, tenant=tenant, model=selection.model)
        return await _maybe_wait(task_id, wait, response, queued=True)

    async def _maybe_wait(
        task_id: str, wait: float | None, response: Response, queued: bool = False
    ) -> dict[str, Any]:
        if wait:
            record = await _wait_final(task_id, time.monotonic() + wait, queued)
        else:
            record = await store.get(task_id)
        if record is None:  # expired or deleted while we waited
            raise ApiError(404, f"task {task_id!r} not found", "task_id")
        if wait and record["status"] in FINAL_STATUSES:
            response.status_code = 200
        return _public(record)

    async def _wait_final(task_id: str, deadline: float, queued: bool) -> dict[str, Any] | None:
        with completions.waiting(task_id) as waiter:
            if queued:
                # Enqueued just now, so not final yet: no read before its completion
                # message (or the first re-check). The waiter was registered before any
                # await since the enqueue, so only a task finished faster than that Redis
                # reply came back could be announced unheard, and it costs one re-check.
                await _woken(waiter.event, deadline)
            while True:
                announced = waiter.take()
                if announced is not None and announced["status"] in FINAL_STATUSES:
                    return announced
                # Cleared before the read: a message arriving after it is never missed.
                waiter.event.clear()
                record = await store.get(task_id)
                if (
                    record is None
                    or record["status"] in FINAL_STATUSES
                    or time.monotonic() >= deadline
                ):
                    return record
                await _woken(waiter.event, deadline)

    @app.get("/v1/tasks/{task_id}")
    async def get_task(task_id: str, tenant: CurrentTenant) -> dict[str, Any]:
        if len(task_id) > 64:
            raise ApiError(422, "task_id: at most 64 characters", "task_id")
        record = await store.get(task_id)
        # Another tenant's task is reported as missing, so ids reveal nothing.
        if record is None or record.get("tenant") != tenant:
            raise ApiError(404, f"task {task_id!r} not found", "task_id")
        return _public(record)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        problems = []
        try:
            await runtime.redis.ping()
            open_models = await board.open_models()
            if len(open_models) == len(settings.models):
                problems.append("every LLM circuit is open: " + ", ".join(open_models))
        except Exception as exc:
            problems.append(f"redis unreachable: {type(exc).__name__}")
        body = {"status": "not ready" if problems else "ready", "problems": problems}
        return JSONResponse(body, 503 if problems else 200)

    @app.get("/metrics")
    async def metrics() -> Response:
        try:
            depth = await queue.depth()
            m.queue_depth.labels(**m.rel(stream=queue.stream, group=queue.group)).set(depth)
        except Exception as exc:
            log.warning("queue depth unavailable", error=type(exc).__name__)
        return Response(m.render(), media_type=CONTENT_TYPE_LATEST)

    app.state.runtime = runtime
    app.state.authenticator = authenticator
    return app


async def _woken(event: asyncio.Event, deadline: float) -> None:
    """Until the event is set, the next re-check is due or the deadline passes."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), max(0.0, min(deadline - time.monotonic(), _RECHECK_S)))


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {name: record.get(name) for name in _PUBLIC_FIELDS}


def _until_next_month() -> int:
    now = datetime.now(UTC)
    first = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
    return int((first - now).total_seconds()) + 1
