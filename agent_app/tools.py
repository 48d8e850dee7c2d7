"""The agent's tool registry and its tools: arithmetic, time, Redis memory, fetch."""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from redis.asyncio import Redis

from agent_app.keys import memory_key
from agent_app.redaction import redact, redact_named
from agent_app.runtime import text
from agent_app.settings import Settings


class ToolError(Exception):
    """The tool refused its arguments; the message goes back to the model."""


@dataclass(frozen=True)
class ToolContext:
    redis: Redis
    http: httpx.AsyncClient
    settings: Settings
    tenant: str
    session_id: str


ToolFunc = Callable[[ToolContext, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    func: ToolFunc
    # The same arguments always give the same output, and calling it changes nothing: a
    # task that used only such tools may be answered again from its stored result.
    deterministic: bool = False

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class ToolRegistry:
    def __init__(self, tools: list[Tool]) -> None:
        self._tools = {t.name: t for t in tools}

    @property
    def names(self) -> list[str]:
        return sorted(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [self._tools[n].schema() for n in self.names]

    def deterministic(self, name: str) -> bool:
        tool = self._tools.get(name)
        return tool is not None and tool.deterministic

    async def call(self, ctx: ToolContext, name: str, raw_arguments: str) -> str:
        tool = self._tools.get(name)
        if tool is None:
            raise ToolError(f"unknown tool {name!r}")
        try:
            args = json.loads(raw_arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ToolError(f"arguments are not JSON: {exc.msg}") from None
        if not isinstance(args, dict):
            raise ToolError("arguments must be a JSON object")
        for required in tool.parameters.get("required", []):
            if not isinstance(args.get(required), str):
                raise ToolError(f"argument {required!r} is required and must be a string")
        return await tool.func(ctx, args)


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def evaluate(expression: str) -> float | int:
    """Arithmetic on numbers only: no names, calls or attributes can be reached."""
    if len(expression) > 200:
        raise ToolError("expression longer than 200 characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None
    return _walk(tree)


def _walk(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _walk(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise ToolError("booleans are not numbers here")
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        result: float | int = _UNARY[type(node.op)](_walk(node.operand))
        return result
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _binary(node)
    raise ToolError(f"unsupported element {type(node).__name__} in expression")


def _binary(node: ast.BinOp) -> float | int:
    left, right = _walk(node.left), _walk(node.right)
    # Bound exponents so a task cannot make the worker compute a huge integer.
    if isinstance(node.op, ast.Pow) and abs(right) > 64:
        raise ToolError("exponent larger than 64")
    try:
        out: float | int = _BINARY[type(node.op)](left, right)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    return out


async def _calculator(_ctx: ToolContext, args: dict[str, Any]) -> str:
    expression = args["expression"]
    value = evaluate(expression)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{expression.strip()} = {value}"


async def _current_time(_ctx: ToolContext, args: dict[str, Any]) -> str:
    name = args.get("timezone") or "UTC"
    if not isinstance(name, str):
        raise ToolError("timezone must be a string")
    if name.upper() == "UTC":
        now = datetime.now(UTC)
    else:
        try:
            now = datetime.now(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolError(f"unknown timezone {name!r}") from None
    return f"current time in {name}: {now.isoformat(timespec='seconds')}"


async def _memory_set(ctx: ToolContext, args: dict[str, Any]) -> str:
    # Stored without credentials: under a name such as "password" the whole value goes.
    key = redact(args["key"][:64]).text
    value = redact_named(key, args["value"][:1024]).text
    name = memory_key(ctx.tenant, ctx.session_id)
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.hset(name, key, value)
        pipe.expire(name, ctx.settings.memory_ttl_s)
        await pipe.execute()
    return f"remembered {key}"


async def _memory_get(ctx: ToolContext, args: dict[str, Any]) -> str:
    key = args["key"][:64]
    value = await ctx.redis.hget(memory_key(ctx.tenant, ctx.session_id), key)
    return f"{key} is {text(value)}" if value is not None else f"nothing remembered for {key}"


_ENCODED_PATH_TRICKS = re.compile(r"%(?:2e|2f|5c)", re.I)


def url_allowed(url: str, allowlist: list[str]) -> bool:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    if parsed.scheme not in ("http", "https") or parsed.userinfo or not parsed.host:
        return False
    # Encoded dots and slashes could climb out of an allowed folder on the server side.
    if _ENCODED_PATH_TRICKS.search(parsed.raw_path.decode("ascii", errors="replace")):
        return False
    # Compare normalised forms so tricks like "http://allowed.host@evil" or a missing
    # path separator ("/docs" vs "/docs-private") cannot slip through.
    canonical = str(parsed.copy_with(query=None, fragment=None))
    for prefix in allowlist:
        allowed = str(httpx.URL(prefix))
        if canonical == allowed.rstrip("/") or canonical.startswith(
            allowed if allowed.endswith("/") else allowed + "/"
        ):
            return True
    return False


async def _fetch(ctx: ToolContext, args: dict[str, Any]) -> str:
    url = args["url"]
    if not url_allowed(url, ctx.settings.fetch_allowlist):
        raise ToolError(f"URL {url!r} is not on the fetch allowlist")
    limit = ctx.settings.fetch_max_bytes
    async with ctx.http.stream("GET", url) as response:
        if response.status_code != 200:
            raise ToolError(f"fetch of {url!r} returned HTTP {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body.extend(chunk[: limit - len(body)])
            if len(body) >= limit:
                break
    return body.decode("utf-8", errors="replace")


def default_registry() -> ToolRegistry:
    string = {"type": "string"}
    return ToolRegistry(
        [
            Tool(
                "calculator",
                "Evaluate an arithmetic expression (+ - * / // % ** and parentheses).",
                {
                    "type": "object",
                    "properties": {"expression": string},
                    "required": ["expression"],
                },
                _calculator,
                deterministic=True,
            ),
            Tool(
                "current_time",
                "Current date and time in an IANA timezone (default UTC).",
                {"type": "object", "properties": {"timezone": string}, "required": []},
                _current_time,
            ),
            Tool(
                "memory_set",
                "Remember a value under a key for this session.",
                {
                    "type": "object",
                    "properties": {"key": string, "value": string},
                    "required": ["key", "value"],
                },
                _memory_set,
            ),
            Tool(
                "memory_get",
                "Recall the value remembered under a key in this session.",
                {"type": "object", "properties": {"key": string}, "required": ["key"]},
                _memory_get,
            ),
            Tool(
                "fetch",
                "Fetch a text document from an allowlisted URL.",
                {"type": "object", "properties": {"url": string}, "required": ["url"]},
                _fetch,
            ),
        ]
    )
