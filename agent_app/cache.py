"""Caches in Redis: LLM responses, keyed by tenant and a hash of the model and the
normalised request, and whole task results, which the API answers a repeated task from.

Both are per tenant. A hit is visible to the tenant that gets it (`tokens.cached_calls`,
a lower `cost_usd`, a faster answer), so an entry shared between tenants would tell one
that another sent the same text."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from redis.asyncio.client import Pipeline

from agent_app import keys
from agent_app.llm import ChatResult
from agent_app.metrics import Metrics
from agent_app.queue import FinalWrite
from agent_app.records import CachedAnswer
from agent_app.redaction import redact, redact_json
from agent_app.runtime import text

# Call ids differ between otherwise equal conversations; they say nothing about content.
_VOLATILE_KEYS = frozenset({"id", "tool_call_id"})


def _normalise(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in sorted(value.items()) if k not in _VOLATILE_KEYS}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def cache_key(
    tenant: str, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> str:
    payload = json.dumps(
        {"model": model, "messages": _normalise(messages), "tools": _normalise(tools or [])},
        sort_keys=True,
        separators=(",", ":"),
    )
    return keys.response_cache_key(tenant, hashlib.sha256(payload.encode()).hexdigest())


class ResponseCache:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def read(self, pipe: Pipeline, key: str) -> Callable[[Iterator[Any]], ChatResult | None]:
        """Queues the lookup on the caller's pipeline (the call's budget check reads in the
        same round trip); the function returned takes the cached reply, if any, from the
        replies in the order queued, and counts the hit or miss."""
        pipe.get(key)

        def cached(replies: Iterator[Any]) -> ChatResult | None:
            raw = next(replies)
            result = "hit" if raw is not None else "miss"
            self._metrics.cache.labels(**self._metrics.rel(result=result)).inc()
            return None if raw is None else ChatResult.from_json(text(raw))

        return cached

    @staticmethod
    def entry(value: ChatResult) -> str:
        """A reply as it is cached (`BudgetLedger.charge` writes it with the call's cost)."""
        return _without_credentials(value).to_json()


def _without_credentials(reply: ChatResult) -> ChatResult:
    """The reply as stored: its text and tool arguments redacted (the arguments as JSON)."""
    return dataclasses.replace(
        reply,
        content=None if reply.content is None else redact(reply.content).text,
        tool_calls=[
            dataclasses.replace(call, arguments=redact_json(call.arguments).text)
            for call in reply.tool_calls
        ],
    )


def result_cache_key(tenant: str, model: str, variant: str, task: str) -> str:
    # Per tenant: a hit answers in a few milliseconds, which must not tell one tenant what
    # another has asked. The layout number keeps entries of an earlier layout (a string,
    # not today's hash) out of reach.
    payload = json.dumps(
        {
            "layout": 2,
            "tenant": tenant,
            "model": model,
            "variant": variant,
            "task": _normalise(task),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return keys.result_key(hashlib.sha256(payload.encode()).hexdigest())


class ResultCache:
    """Results of tasks that depend on nothing but their request: no session (so no
    earlier turns or shared memory) and only deterministic tools. The LLM calls of such a
    task are cached anyway; answering from the stored result also skips the queue and
    the worker, which is most of a task's cost when every call would be a cache hit.

    A result is stored as the task record fields it gives a task answered from it, so the
    API reads it and writes that record in its admission step (`TaskStore.admit`)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def count(self, hit: bool) -> None:
        self._metrics.result_cache.labels(
            **self._metrics.rel(result="hit" if hit else "miss")
        ).inc()

    @staticmethod
    def write(key: str, value: CachedAnswer, ttl_s: int) -> FinalWrite:
        """The result stored with the task's final write (`queue.FinalWrite`)."""
        return FinalWrite(key, {"hash": value.hset_args(), "ttl": ttl_s})
