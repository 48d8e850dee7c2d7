"""Development stand-in for an OpenAI-compatible LLM server (vLLM or a hosted API).

Deterministic: the same request always gets the same answer. It understands just enough
of a task to call the agent's tools (arithmetic, time, memory, fetch) and then answers
with their results, and it reports token usage. Latency, HTTP errors and hangs can be
injected at start (flags) or at run time (`/admin/faults`), so the local stack and the
tests can exercise retries, timeouts and the circuit breaker. It is not a language model.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.requests import Request

_EXPR = re.compile(r"(?<![\w.])[-(]*\d+(?:\.\d+)?(?:\s*[-+*/%^()]+\s*[-(]*\d+(?:\.\d+)?\)*)+")
_URL = re.compile(r"https?://[^\s'\"<>]+")
_REMEMBER = re.compile(r"\bremember(?: that)? (?:my )?([A-Za-z_][\w-]{0,40}) is ([^.;\n]+)", re.I)
_RECALL = re.compile(r"\b(?:recall|what is) my ([A-Za-z_][\w-]{0,40})", re.I)
_KNOWN_TOOLS = frozenset({"calculator", "current_time", "memory_set", "memory_get", "fetch"})
_ZONE = re.compile(r"\b([A-Z][a-z]+/[A-Z][A-Za-z_]+)\b")


# Answers a real endpoint can give that the agent must not take at face value.
Malformed = Literal["no_choices", "null_content", "no_usage", "oversized", "invented_tool"]


class Fault(BaseModel):
    model: str = "*"
    fail_next: int = Field(default=0, ge=0)
    status: int = Field(default=500, ge=400, le=599)
    # Hung requests are let go after hang_s, or at once when the faults are cleared.
    hang_next: int = Field(default=0, ge=0)
    hang_s: float = Field(default=60.0, ge=0)
    latency_ms: int = Field(default=0, ge=0)
    malformed_next: int = Field(default=0, ge=0)
    malformed: Malformed = "no_choices"
    # The content length of an `oversized` answer.
    oversized_chars: int = Field(default=2 * 1024 * 1024, ge=1, le=64 * 1024 * 1024)


class _FaultState:
    def __init__(self, latency_ms: int, error_every: int, timeout_every: int) -> None:
        self.base_latency_ms = latency_ms
        self.error_every = error_every
        self.timeout_every = timeout_every
        self.faults: dict[str, Fault] = {}
        self.release = asyncio.Event()
        self.requests: Counter[str] = Counter()
        self.inflight: Counter[str] = Counter()
        self.max_inflight: Counter[str] = Counter()

    def fault_for(self, model: str) -> Fault | None:
        return self.faults.get(model) or self.faults.get("*")


def _tokens(text: str) -> int:
    return len(text) // 4 + 1


def _last_user_text(messages: list[dict[str, Any]]) -> tuple[str, int]:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return str(messages[index].get("content") or ""), index
    return "", -1


def _call(name: str, args: dict[str, Any], seed: str) -> dict[str, Any]:
    call_id = "call_" + hashlib.sha256(f"{seed}:{name}:{args}".encode()).hexdigest()[:16]
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def plan_tool_calls(task: str, tool_names: set[str] | frozenset[str]) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    if "calculator" in tool_names:
        for match in _EXPR.finditer(task):
            calls.append(_call("calculator", {"expression": match.group(0).strip()}, task))
    if "current_time" in tool_names and re.search(r"\btime\b", task, re.I):
        zone = _ZONE.search(task)
        calls.append(_call("current_time", {"timezone": zone.group(1) if zone else "UTC"}, task))
    if "memory_set" in tool_names:
        for key, value in _REMEMBER.findall(task):
            calls.append(_call("memory_set", {"key": key, "value": value.strip()}, task))
    if "memory_get" in tool_names:
        for key in _RECALL.findall(task):
            calls.append(_call("memory_get", {"key": key}, task))
    if "fetch" in tool_names:
        for url in _URL.findall(task):
            calls.append(_call("fetch", {"url": url.rstrip(".,)")}, task))
    return calls


def respond(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The deterministic assistant message for a conversation."""
    task, user_index = _last_user_text(messages)
    tool_results = [
        str(m.get("content") or "") for m in messages[user_index + 1 :] if m.get("role") == "tool"
    ]
    names = {t["function"]["name"] for t in tools if t.get("type") == "function"}
    if names and not tool_results:
        calls = plan_tool_calls(task, names)
        if calls:
            return {"role": "assistant", "content": None, "tool_calls": calls}
    if not tools and any(
        m.get("role") == "system" and "plan" in str(m.get("content")).lower() for m in messages
    ):
        steps = plan_tool_calls(task, _KNOWN_TOOLS)
        used = sorted({c["function"]["name"] for c in steps}) or ["none"]
        return {"role": "assistant", "content": f"Plan: use tools {', '.join(used)}; then answer."}
    if tool_results:
        content = "Answer: " + "; ".join(tool_results) + f" (task: {task})"
    else:
        content = f"Answer: {task}"
    return {"role": "assistant", "content": content}


def _chat_endpoint(state: _FaultState) -> Callable[[Request], Awaitable[JSONResponse]]:
    # A plain Starlette route rather than a FastAPI one: FastAPI's body parsing, validation
    # and dependency solving cost more CPU than the answer itself, and in the load
    # benchmark devllm shares the cores with the app it stands in for.
    async def chat(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        # What OpenAI answers to a body it cannot read: 400 and its error format.
        if not isinstance(body, dict):
            return _invalid("the body must be a JSON object")
        model = str(body.get("model") or "")
        messages = body.get("messages")
        if not model or not isinstance(messages, list):
            return _invalid("model and messages are required")
        state.requests[model] += 1
        state.inflight[model] += 1
        state.max_inflight[model] = max(state.max_inflight[model], state.inflight[model])
        try:
            return await _complete(state, model, messages, body.get("tools") or [], raw)
        finally:
            state.inflight[model] -= 1

    return chat


def create_app(latency_ms: int = 0, error_every: int = 0, timeout_every: int = 0) -> FastAPI:
    state = _FaultState(latency_ms, error_every, timeout_every)
    app = FastAPI(title="agent-app devllm (development stand-in)", docs_url=None, redoc_url=None)

    app.add_route("/v1/chat/completions", _chat_endpoint(state), methods=["POST"])

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model"} for m in state.requests]}

    @app.get("/pages/{name}")
    async def page(name: str) -> PlainTextResponse:
        # A fixed document for the fetch tool to read in development.
        return PlainTextResponse(f"Page {name}: the quick brown fox jumps over the lazy dog.")

    @app.post("/admin/faults")
    async def set_fault(fault: Fault) -> dict[str, Any]:
        state.faults[fault.model] = fault
        return fault.model_dump()

    # Clearing also zeroes the statistics, so each test or experiment starts afresh.
    @app.delete("/admin/faults")
    async def clear_faults() -> dict[str, str]:
        state.faults.clear()
        state.release.set()
        state.release = asyncio.Event()
        state.requests.clear()
        state.max_inflight.clear()
        return {"status": "cleared"}

    @app.get("/admin/stats")
    async def stats() -> dict[str, Any]:
        return {"requests": dict(state.requests), "max_inflight": dict(state.max_inflight)}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def _complete(
    state: _FaultState,
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    raw: bytes,
) -> JSONResponse:
    failed = await _injected_faults(state, model)
    if failed is not None:
        return failed
    message = respond(messages, tools)
    fault = state.fault_for(model)
    malformed: Malformed | None = None
    # A model invents tool names only when offered tools.
    if fault and fault.malformed_next and (tools or fault.malformed != "invented_tool"):
        fault.malformed_next -= 1
        malformed = fault.malformed
        message = _malformed_message(malformed, message, fault.oversized_chars)
    prompt = sum(_tokens(json.dumps(m.get("content") or "")) for m in messages)
    completion = _tokens(json.dumps(message.get("content") or message.get("tool_calls")))
    body: dict[str, Any] = {
        # The request's own bytes, not a re-serialisation of them: the same request
        # still gets the same id.
        "id": "chatcmpl-" + hashlib.sha256(raw).hexdigest()[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    if malformed == "no_choices":
        body["choices"] = []
    elif malformed == "no_usage":
        del body["usage"]
    return JSONResponse(body)


def _malformed_message(kind: Malformed, message: dict[str, Any], size: int) -> dict[str, Any]:
    if kind == "null_content":
        return {"role": "assistant", "content": None}
    if kind == "oversized":
        return {"role": "assistant", "content": "A" * size}
    if kind == "invented_tool":
        # A fresh name each time, as a model making names up would give.
        name = f"evil_tool_{time.monotonic_ns() % 10**9}"
        return {"role": "assistant", "content": None, "tool_calls": [_call(name, {}, name)]}
    return message


async def _injected_faults(state: _FaultState, model: str) -> JSONResponse | None:
    """Delays, hangs and the error answer the faults set for this request call for."""
    n = state.requests[model]
    fault = state.fault_for(model)
    delay_ms = state.base_latency_ms + (fault.latency_ms if fault else 0)
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    if fault and fault.hang_next:
        fault.hang_next -= 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.release.wait(), fault.hang_s)
    if state.timeout_every and n % state.timeout_every == 0:
        await asyncio.sleep(3600)
    if fault and fault.fail_next:
        fault.fail_next -= 1
        return _error(fault.status)
    if state.error_every and n % state.error_every == 0:
        return _error(500)
    return None


def _invalid(message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid"}}, status_code=400)


def _error(status: int) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": f"injected error {status}", "type": "injected", "code": status}},
        status_code=status,
    )
