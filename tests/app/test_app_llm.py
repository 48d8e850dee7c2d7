"""The LLM client against the dev server over HTTP: retries, circuit breaker with
half-open probing, timeouts and the concurrency limit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import redis

from agent_app.breaker import CircuitBreaker
from agent_app.llm import CircuitOpenError, LLMError
from agent_app.metrics import Metrics
from agent_app.runtime import BreakerBoard, connect_redis
from agent_app.settings import Settings
from app.appkit import DevLLM, RedisServer, Service, llm_client, llm_retries, run_async

MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "compute 1 + 2"}]

# These tests start or use a real redis-server.
pytestmark = pytest.mark.redis


def _settings(devllm: DevLLM, redis_server: RedisServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_base_url": devllm.base_url,
        "redis_url": redis_server.url,
        "redis_password": "test-redis-password",
        "llm_retry_attempts": 1,
        "llm_retry_wait_initial_s": 0.01,
        "llm_retry_wait_max_s": 0.02,
        "llm_timeout_s": 2,
    }
    values.update(overrides)
    return Settings(**values)


def _gauge(metrics: Metrics, model: str) -> float | None:
    return metrics.registry.get_sample_value(
        "agent_llm_circuit_state",
        {"model": model, "release_version": "t", "release_track": "stable"},
    )


def test_transient_errors_are_retried_with_backoff(
    devllm: DevLLM, redis_server: RedisServer
) -> None:
    settings = _settings(devllm, redis_server, llm_retry_attempts=3)
    devllm.fault(model="small", fail_next=2, status=502)

    async def run() -> None:
        client, metrics = llm_client(settings)
        result = await client.chat("small", MESSAGES)
        assert result.content is not None
        assert result.prompt_tokens > 0
        assert llm_retries(metrics, "small") == 2
        await client.aclose()

    run_async(run())
    assert devllm.requests()["small"] == 3


def test_client_errors_are_not_retried(devllm: DevLLM, redis_server: RedisServer) -> None:
    settings = _settings(devllm, redis_server, llm_retry_attempts=3)
    devllm.fault(model="medium", fail_next=1, status=400)

    async def run() -> None:
        client, _ = llm_client(settings)
        with pytest.raises(LLMError, match="HTTP 400"):
            await client.chat("medium", MESSAGES)
        assert client.breaker("medium").state == "closed"
        await client.aclose()

    run_async(run())
    assert devllm.requests()["medium"] == 1


def test_timeout_cuts_a_hanging_call_and_the_retry_succeeds(
    devllm: DevLLM, redis_server: RedisServer
) -> None:
    settings = _settings(devllm, redis_server, llm_retry_attempts=2, llm_timeout_s=0.5)
    devllm.fault(model="large", hang_next=1, hang_s=2)

    async def run() -> None:
        client, metrics = llm_client(settings)
        result = await client.chat("large", MESSAGES)
        assert result.content is not None
        timeouts = metrics.registry.get_sample_value(
            "gen_ai_client_operation_duration_seconds_count",
            {
                "gen_ai_operation_name": "chat",
                "gen_ai_request_model": "large",
                "error_type": "APITimeoutError",
                "release_version": "t",
                "release_track": "stable",
            },
        )
        assert timeouts == 1
        await client.aclose()

    run_async(run())
    assert devllm.requests()["large"] == 2


def test_concurrency_limit_bounds_parallel_calls(devllm: DevLLM, redis_server: RedisServer) -> None:
    settings = _settings(devllm, redis_server, llm_max_concurrency=2)
    devllm.fault(latency_ms=150)

    async def run() -> None:
        client, _ = llm_client(settings)
        await asyncio.gather(*(client.chat("medium", MESSAGES) for _ in range(6)))
        await client.aclose()

    run_async(run())
    assert devllm.max_inflight("medium") == 2


def test_breaker_opens_rejects_then_half_open_probe_closes_it(
    devllm: DevLLM, redis_server: RedisServer, api: Service, clean_redis: redis.Redis
) -> None:
    settings = _settings(devllm, redis_server, breaker_failure_threshold=2, breaker_reset_s=1.0)
    models = [m.name for m in settings.models]
    devllm.fault(fail_next=100, status=500)

    async def run() -> None:
        redis_client = connect_redis(settings)
        client, metrics = llm_client(settings, BreakerBoard(redis_client, settings).publish)
        for model in models:
            for _ in range(2):
                with pytest.raises(LLMError, match="HTTP 500"):
                    await client.chat(model, MESSAGES)
            assert client.breaker(model).state == "open"
            assert _gauge(metrics, model) == 2
        before = devllm.total_requests()
        with pytest.raises(CircuitOpenError, match="circuit for model 'small' is open"):
            await client.chat("small", MESSAGES)
        assert devllm.total_requests() == before  # rejected without calling the model
        await asyncio.sleep(0.05)  # let the state reach Redis
        ready = httpx.get(f"{api.url}/ready").json()
        assert ready["status"] == "not ready"
        assert "every LLM circuit is open" in ready["problems"][0]

        await asyncio.sleep(settings.breaker_reset_s)
        assert client.breaker("small").state == "half_open"
        assert _gauge(metrics, "small") == 1
        # A failed probe re-opens the circuit at once.
        with pytest.raises(LLMError):
            await client.chat("small", MESSAGES)
        assert client.breaker("small").state == "open"

        await asyncio.sleep(settings.breaker_reset_s)
        httpx.delete(f"{devllm.url}/admin/faults").raise_for_status()
        result = await client.chat("small", MESSAGES)
        assert result.content is not None
        assert client.breaker("small").state == "closed"
        assert _gauge(metrics, "small") == 0
        await asyncio.sleep(0.05)
        assert httpx.get(f"{api.url}/ready").status_code == 200
        await client.aclose()
        await redis_client.aclose()

    run_async(run())


def test_half_open_breaker_lets_one_probe_through() -> None:
    now = [0.0]
    breaker = CircuitBreaker("m", failure_threshold=1, reset_s=5, clock=lambda: now[0])
    breaker.record_failure()
    assert not breaker.allow()
    now[0] = 5.0
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()  # second caller waits for the probe's outcome
    breaker.record_success()
    assert breaker.allow()
    assert breaker.allow()


def test_breaker_counts_consecutive_failures_only() -> None:
    breaker = CircuitBreaker("m", failure_threshold=3, reset_s=5, clock=time.monotonic)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert str(breaker.state) == "open"
