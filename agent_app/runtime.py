"""Wiring shared by the API and the worker: Redis, metrics, tracing, logging, breakers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from redis.asyncio import BlockingConnectionPool, Redis

from agent_app import logging as app_logging
from agent_app import tracing
from agent_app.breaker import State
from agent_app.keys import breaker_key
from agent_app.metrics import Metrics
from agent_app.redisfaults import RedisFaults
from agent_app.releases import Release
from agent_app.settings import Settings


def text(value: bytes | str) -> str:
    """The client decodes responses; this narrows redis-py's bytes-or-str types."""
    return value.decode() if isinstance(value, bytes) else value


def connect_redis(settings: Settings) -> Redis:
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    # A blocking pool: when a burst has every connection busy, a command waits for one
    # (up to 5 s) instead of failing at once with MaxConnectionsError, which the API
    # answered as 503 under load.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        password=password,
        decode_responses=True,
        health_check_interval=30,
        max_connections=100,
        timeout=5,
    )
    client: Redis = Redis.from_pool(pool)
    return client


class BreakerBoard:
    """Shares open circuits through Redis so every replica's readiness can see them.
    A key exists only while a circuit is open and expires when probing may start."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings

    async def publish(self, model: str, state: State) -> None:
        if state == "open":
            ttl = max(1, math.ceil(self._settings.breaker_reset_s))
            await self._redis.set(breaker_key(model), "open", ex=ttl)
        else:
            await self._redis.delete(breaker_key(model))

    async def open_models(self) -> list[str]:
        names = [m.name for m in self._settings.models]
        values = await self._redis.mget([breaker_key(n) for n in names])
        return [n for n, v in zip(names, values, strict=True) if v == "open"]


@dataclass
class Runtime:
    settings: Settings
    release: Release
    metrics: Metrics
    provider: TracerProvider
    redis: Redis
    redis_faults: RedisFaults = field(default_factory=RedisFaults)

    @classmethod
    def build(
        cls, settings: Settings, role: str, span_processor: SpanProcessor | None = None
    ) -> Runtime:
        release = Release.from_settings(settings)
        metrics = Metrics(release)
        app_logging.configure(release, settings.log_level, metrics)
        provider = tracing.build_provider(settings, role, span_processor)
        return cls(settings, release, metrics, provider, connect_redis(settings))

    async def aclose(self) -> None:
        await self.redis.aclose()
        self.provider.shutdown()
