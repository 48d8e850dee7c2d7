"""The API's ASGI middleware, as plain ASGI: the decorator form (BaseHTTPMiddleware) runs
each request through an extra task and memory streams, which the profile showed as a
large share of the API's time."""

from __future__ import annotations

import asyncio

from prometheus_client.metrics import Gauge
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_app.admission import RecentRefusals
from agent_app.auth import Authenticator, key_from_headers
from agent_app.errors import api_error_response, error_body
from agent_app.metrics import Metrics


class BodyLimit:
    """Refuses bodies over the limit before they are parsed, chunked ones included, and
    bodies that do not arrive in time: a client announcing a longer Content-Length than it
    sends would otherwise hold the connection until it gave up."""

    def __init__(self, app: ASGIApp, limit: int, read_timeout_s: float) -> None:
        self.app = app
        self.limit = limit
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        more = True
        try:
            async with asyncio.timeout(self.read_timeout_s):
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    body.extend(message.get("body", b""))
                    more = message.get("more_body", False)
                    if len(body) > self.limit:
                        response = JSONResponse(
                            error_body(f"request body larger than {self.limit} bytes", "body"),
                            status_code=413,
                        )
                        await response(scope, receive, send)
                        return
        except TimeoutError:
            response = JSONResponse(
                error_body(
                    f"request body not received within {self.read_timeout_s:g} s "
                    f"({len(body)} bytes arrived; is Content-Length right?)",
                    "body",
                ),
                status_code=408,
                # The rest of the body may still come: the connection cannot be reused.
                headers={"Connection": "close"},
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


class ReleaseAndInflight:
    """Release headers on every response and the in-flight gauge."""

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


class RefusalGate:
    """Answers a task submission with the tenant's load refusal of the last moment, if
    there is one (`admission.RecentRefusals`), before the route parses it. Anything it
    cannot decide cheaply and for sure (no key or two, an unknown key, an Idempotency-Key)
    goes on to the route, which answers it in full."""

    def __init__(
        self,
        app: ASGIApp,
        refusals: RecentRefusals,
        authenticator: Authenticator,
        metrics: Metrics,
        path: str,
    ) -> None:
        self.app = app
        self.refusals = refusals
        self.authenticator = authenticator
        self.metrics = metrics
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.refusals
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == self.path
        ):
            tenant = self._tenant(scope["headers"])
            found = self.refusals.recall(tenant) if tenant is not None else None
            if found is not None:
                refusal, reason = found
                m = self.metrics
                m.admission_refusals.labels(**m.rel(reason=reason)).inc()
                await api_error_response(refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _tenant(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        x_api_key = authorization = None
        for name, value in headers:
            if name == b"idempotency-key":
                return None
            if name == b"x-api-key":
                x_api_key = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        if x_api_key is not None and authorization is not None:
            return None
        key = key_from_headers(x_api_key, authorization)
        return self.authenticator.tenant_for(key) if key is not None else None
