"""How the app's HTTP servers are run: uvicorn with a deadline for a request's head, and an
embedded server that leaves signal handling to its owner."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from agent_app.errors import error_body
from agent_app.settings import Settings


def _timeout_response(message: str) -> bytes:
    body = json.dumps(error_body(message)).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        "connection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def header_deadline_protocol(timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's HTTP protocol, cutting off a connection whose request line and headers do
    not arrive within `timeout_s` of its opening or of the request's first byte. uvicorn
    itself only times out idle keep-alive connections, so a client trickling its headers
    (or sending none) would hold a connection for as long as it liked."""

    answer = _timeout_response(f"request headers not received within {timeout_s:g} s")

    class HeaderDeadline(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

    return HeaderDeadline


def server_config(app: ASGIApp, settings: Settings, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        http=header_deadline_protocol(settings.header_read_timeout_s),
        log_config=None,
        access_log=False,
    )


class EmbeddedServer(uvicorn.Server):
    """A server run beside another task that owns shutdown: uvicorn would otherwise take
    over SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
