"""The LLM client's idle connections expire before the server's keep-alive does.

An HTTP server closes a connection that has been idle for its keep-alive time; a request
the client sends on it at that moment fails before any answer (aiohttp's
ServerDisconnectedError, which the SDK reports as a timeout). `ClosingServer` plays that
moment every time: a request arriving on a connection idle for longer than its
keep-alive is dropped unanswered. A client that keeps connections for less never sends
one there."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from agent_app.settings import Settings
from app.appkit import llm_client, llm_retries, run_async

SERVER_KEEPALIVE_S = 0.6
CALLS = 4

_ANSWER = json.dumps(
    {
        "id": "chatcmpl-keepalive",
        "object": "chat.completion",
        "created": 0,
        "model": "small",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()


class ClosingServer:
    """A minimal OpenAI-compatible endpoint whose keep-alive timer fires just as the next
    request on an idle connection arrives."""

    def __init__(self) -> None:
        self.dropped = 0
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered_at: float | None = None
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if answered_at is not None and time.monotonic() - answered_at > SERVER_KEEPALIVE_S:
                    self.dropped += 1
                    return
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(_ANSWER), _ANSWER)
                )
                await writer.drain()
                answered_at = time.monotonic()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@pytest.mark.parametrize(
    ("client_keepalive_s", "expect_reuse_failures"),
    [
        pytest.param(0.3, False, id="client expires first"),
        # The contrast: the same lull with the old default (the server's own 5 s).
        pytest.param(5.0, True, id="client keeps longer than the server"),
    ],
)
def test_a_lull_longer_than_the_servers_keepalive_costs_no_failed_call(
    client_keepalive_s: float, expect_reuse_failures: bool
) -> None:
    async def run() -> tuple[ClosingServer, float]:
        endpoint = ClosingServer()
        server = await endpoint.start()
        settings = Settings(
            llm_base_url=f"http://127.0.0.1:{endpoint.port}/v1",
            llm_keepalive_s=client_keepalive_s,
            llm_retry_attempts=3,
            llm_retry_wait_initial_s=0.01,
            llm_retry_wait_max_s=0.02,
            llm_timeout_s=5,
        )
        client, metrics = llm_client(settings)
        messages = [{"role": "user", "content": "hi"}]
        try:
            for burst in range(2):
                if burst:
                    await asyncio.sleep(SERVER_KEEPALIVE_S * 2)
                replies = await asyncio.gather(
                    *(client.chat("small", messages) for _ in range(CALLS))
                )
                assert [reply.content for reply in replies] == ["ok"] * CALLS
            return endpoint, llm_retries(metrics, "small")
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    endpoint, retries = run_async(run())
    # Every dropped request is a failed attempt the breaker counts, retried at once.
    assert retries == endpoint.dropped
    assert (endpoint.dropped > 0) == expect_reuse_failures
