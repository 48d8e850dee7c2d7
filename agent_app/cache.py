"""LLM response cache in Redis, keyed by a hash of the model and the normalised request."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from agent_app.llm import ChatResult
from agent_app.metrics import Metrics
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
    model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> str:
    payload = json.dumps(
        {"model": model, "messages": _normalise(messages), "tools": _normalise(tools or [])},
        sort_keys=True,
        separators=(",", ":"),
    )
    return "agent:cache:" + hashlib.sha256(payload.encode()).hexdigest()


class ResponseCache:
    def __init__(self, redis: Redis, metrics: Metrics) -> None:
        self._redis = redis
        self._metrics = metrics

    async def get(self, key: str) -> ChatResult | None:
        raw = await self._redis.get(key)
        result = "hit" if raw is not None else "miss"
        self._metrics.cache.labels(**self._metrics.rel(result=result)).inc()
        if raw is None:
            return None
        return ChatResult.from_json(text(raw))

    def put(self, transaction: Pipeline, key: str, value: ChatResult, ttl_s: int) -> None:
        transaction.set(key, value.to_json(), ex=ttl_s)
