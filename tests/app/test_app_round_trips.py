"""Redis round trips per task: each step of a task is one (a script, or one pipeline of
reads), since every round trip costs the API, the worker and redis-server CPU. A task
with two LLM calls and no tool is 2 in the API (budget and usage; admission) and 6 in
the worker (start; each call's cache lookup with the budget check, and its charge with
the cache write; the final write), against 4 and 13 before."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable

import httpx
import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from agent_app.api import create_app
from agent_app.auth import hash_key
from agent_app.runtime import Runtime
from agent_app.settings import Settings
from agent_app.tasks import TaskStore
from agent_app.worker import Worker
from app.appkit import REDIS_PASSWORD, TENANT_KEYS, DevLLM, RedisServer, run_async

# These tests start or use a real redis-server.
pytestmark = pytest.mark.redis

# The worker's loop (reading the stream, reclaiming, refreshing claims) and a new
# connection's handshake: not the task's.
_NOT_THE_TASKS = {"XREADGROUP", "XAUTOCLAIM", "XCLAIM", "AUTH", "HELLO", "CLIENT", "PING"}


def _first_command(packed: bytes | str | Iterable[bytes | memoryview]) -> str:
    if isinstance(packed, str):
        packed = packed.encode()
    data = packed if isinstance(packed, bytes) else b"".join(bytes(p) for p in packed)
    # RESP: *<n>\r\n$<len>\r\n<NAME>\r\n…
    return data.split(b"\r\n")[2].decode().upper()


def _count_round_trips(client: Redis) -> list[str]:
    """Every round trip `client` makes from now on, by the first command sent (a
    pipeline's first, MULTI for a transaction): one `send_packed_command` each."""
    trips: list[str] = []

    class Counting(Connection):
        async def send_packed_command(
            self, command: bytes | str | Iterable[bytes], check_health: bool = True
        ) -> None:
            command = command if isinstance(command, bytes | str) else list(command)
            trips.append(_first_command(command))
            await super().send_packed_command(command, check_health)

    client.connection_pool.connection_class = Counting
    return trips


def test_a_task_is_two_round_trips_in_the_api_and_six_in_the_worker(
    redis_server: RedisServer, devllm: DevLLM, clean_redis: redis.Redis, restore_logging: None
) -> None:
    settings = Settings(
        redis_url=redis_server.url,
        redis_password=REDIS_PASSWORD,
        llm_base_url=devllm.base_url,
        api_keys_sha256={hash_key(TENANT_KEYS["acme"]): "acme"},
    )

    async def scenario() -> list[tuple[list[str], list[str]]]:
        app = create_app(settings)
        api_runtime: Runtime = app.state.runtime
        api_trips = _count_round_trips(api_runtime.redis)
        worker_runtime = Runtime.build(settings, "worker")
        worker_trips = _count_round_trips(worker_runtime.redis)
        worker = Worker(worker_runtime, consumer="round-trips")
        await worker.queue.ensure_group()
        stop = asyncio.Event()
        runner = asyncio.create_task(worker.run(stop))
        reader = Redis.from_url(redis_server.url, password=REDIS_PASSWORD, decode_responses=True)
        store = TaskStore(reader, 60)
        found = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            # The first task loads the scripts (NOSCRIPT, then SCRIPT LOAD): the second
            # one is the steady state.
            for _ in range(2):
                api_mark, worker_mark = len(api_trips), len(worker_trips)
                response = await http.post(
                    "/v1/tasks",
                    json={"task": f"Summarise note {uuid.uuid4().hex}"},
                    headers={"X-API-Key": TENANT_KEYS["acme"]},
                )
                assert response.status_code == 202
                api = api_trips[api_mark:]
                for _ in range(400):
                    record = await store.get(response.json()["id"])
                    if record is not None and record.final:
                        break
                    await asyncio.sleep(0.025)
                assert record is not None
                assert record.status == "completed"
                trips = [t for t in worker_trips[worker_mark:] if t not in _NOT_THE_TASKS]
                found.append((api, trips))
        stop.set()
        await runner
        await worker.aclose()
        await worker_runtime.aclose()
        await api_runtime.aclose()
        await reader.aclose()
        return found

    api, worker = run_async(scenario())[-1]
    # Budget and usage in one transaction; the admission script.
    assert api == ["MULTI", "EVALSHA"]
    # The start script; per call, the cache lookup with the budget check (a pipeline)
    # and the charge script with the cache write; the final write script.
    assert worker == ["EVALSHA", "GET", "EVALSHA", "GET", "EVALSHA", "EVALSHA"]
