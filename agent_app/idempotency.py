"""Idempotency keys: a client's retry of a request it already sent gets the same task."""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from agent_app.keys import idempotency_key
from agent_app.runtime import text
from agent_app.validation import TaskRequest


class IdempotencyConflictError(Exception):
    """The key was already used with a different request."""


class IdempotencyKeys:
    """Each key (per tenant) names one task and the request that created it, for a while."""

    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    async def claim(self, tenant: str, key: str, body: TaskRequest, task_id: str) -> str | None:
        """Claims the key for `task_id` and returns None when the key is new; else the task
        the key's first request created (or was about to). Raises IdempotencyConflictError when
        that first request had another body."""
        fingerprint = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
        name = idempotency_key(tenant, key)
        claimed = await self._redis.set(name, f"{task_id}:{fingerprint}", nx=True, ex=self._ttl_s)
        if claimed:
            return None
        stored = await self._redis.get(name)
        existing_id, _, existing_fp = text(stored or "").partition(":")
        if existing_fp != fingerprint:
            raise IdempotencyConflictError
        return existing_id
