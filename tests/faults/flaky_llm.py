"""An OpenAI-compatible LLM endpoint for the fault campaign: devllm's answers behind a fault
mode the test switches at run time. It is served from a thread of the test process, so
the test decides exactly what each request meets and counts what happened."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import uvicorn
from app.appkit import free_port
from starlette.types import ASGIApp, Receive, Scope, Send

from agent_app.devllm import create_app

Mode = Literal["healthy", "errors", "timeouts", "outage"]

# A hung request is released once the mode changes, or after this long at most.
HANG_LIMIT_S = 60.0


@dataclass
class FlakyLLM:
    """`errors`: a seeded `error_rate` of requests get HTTP 500; `timeouts`: every request
    hangs until the mode changes; `outage`: every request gets HTTP 503 at once."""

    error_rate: float
    seed: int
    mode: Mode = "healthy"
    outcomes: Counter[tuple[Mode, str]] = field(default_factory=Counter)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        config = uvicorn.Config(
            _Faults(create_app(), self),
            host="127.0.0.1",
            port=self.port,
            # Not uvicorn's own logging set-up: it would reconfigure this whole test process.
            log_config=None,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the flaky LLM server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.mode = "healthy"
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def count(self, mode: Mode, outcome: str | None = None) -> int:
        return sum(n for (m, o), n in self.outcomes.items() if m == mode and outcome in (None, o))

    def fault_for(self, mode: Mode) -> str | None:
        """Drawn in the server's own thread, so the seeded sequence is not shared."""
        if mode == "errors" and self._rng.random() < self.error_rate:
            return "HTTP 500"
        if mode == "timeouts":
            return "hung"
        if mode == "outage":
            return "HTTP 503"
        return None


class _Faults:
    def __init__(self, app: ASGIApp, llm: FlakyLLM) -> None:
        self.app = app
        self.llm = llm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            await self.app(scope, receive, send)
            return
        mode = self.llm.mode
        fault = self.llm.fault_for(mode)
        self.llm.outcomes[(mode, fault or "answered")] += 1
        if fault == "hung":
            deadline = time.monotonic() + HANG_LIMIT_S
            while self.llm.mode == "timeouts" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        elif fault is not None:
            status = int(fault.removeprefix("HTTP "))
            body = json.dumps({"error": {"message": f"injected {status}", "type": "injected"}})
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await self.app(scope, receive, send)
