"""Task records in Redis: created by the API, advanced by workers, final exactly once."""

from __future__ import annotations

import json
import time
from typing import Any, Literal, NamedTuple

from redis.asyncio import Redis

from agent_app.runtime import text

RedisValue = str | bytes | bytearray | memoryview | int | float
Status = Literal["queued", "running", "completed", "failed", "dead_lettered"]
FINAL_STATUSES = frozenset({"completed", "failed", "dead_lettered"})

# {-2} for an unknown task, {-1} for one that already has its final result, else the new
# attempt count, the tenant's spend so far in the budget ledger KEYS[2], then the record as
# HGETALL gives it: the worker needs all three, and one round trip instead of three is a
# fifth of its Redis traffic per task.
_START = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 1 then return {-1} end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[2])
local spent = redis.call('HGET', KEYS[2], redis.call('HGET', KEYS[1], 'tenant') or '') or '0'
local record = redis.call('HGETALL', KEYS[1])
table.insert(record, 1, spent)
table.insert(record, 1, attempts)
return record
"""

# Progress of a running task, never over a final record: a slower duplicate attempt that
# fails after another one finished would otherwise turn "completed" back into "retrying".
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# {} when no result is stored at KEYS[1]; else the task record KEYS[2] is written from
# ARGV and the result's fields, and those fields returned. Read and write in one round trip
# is most of what a cache hit costs the API.
_CREATE_FROM_RESULT = """
local stored = redis.call('HGETALL', KEYS[1])
if #stored == 0 then return false end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
redis.call('HSET', KEYS[2], unpack(stored))
redis.call('EXPIRE', KEYS[2], ARGV[1])
return stored
"""

_JSON_FIELDS = ("steps", "tokens", "selection", "injection", "request", "cached")


def task_key(task_id: str) -> str:
    return f"agent:task:{task_id}"


class Started(NamedTuple):
    """-2: unknown task, -1: already final (no record then), else the attempt now starting,
    with the task's record and its tenant's spend in the ledger the worker named."""

    attempt: int
    record: dict[str, Any] | None
    spent_usd: float = 0.0


class TaskStore:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._start = redis.register_script(_START)
        self._update = redis.register_script(_UPDATE)
        self._create_from_result = redis.register_script(_CREATE_FROM_RESULT)

    async def create(self, task_id: str, fields: dict[str, Any], stream: str | None = None) -> None:
        """Writes a new task record and, given `stream`, enqueues the task in the same
        transaction: Redis failing between two separate writes would leave a record that
        no worker ever sees, and a client retrying with its Idempotency-Key would be told
        that this never-queued task was accepted."""
        key = task_key(task_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping=encode_fields(
                    {
                        **fields,
                        "id": task_id,
                        "status": "queued",
                        "created_at": time.time(),
                        "attempts": 0,
                        "cost_usd": 0.0,
                    }
                ),
            )
            pipe.expire(key, self._ttl_s)
            if stream is not None:
                pipe.xadd(stream, stream_entry(task_id, fields["tenant"]))
            await pipe.execute()

    async def create_from_result(
        self, task_id: str, fields: dict[str, Any], result_key: str
    ) -> dict[str, Any] | None:
        """Writes a task record that is final from the start, its answer taken from the
        stored result at `result_key` in the same step, and returns it as `get` would;
        None, and nothing written, when no result is stored there."""
        now = time.time()
        record = {
            **fields,
            "id": task_id,
            "status": "completed",
            "created_at": now,
            "finished_at": now,
            "attempts": 0,
            "cost_usd": 0.0,
        }
        args = hset_args(record)
        stored = await self._create_from_result(
            keys=[result_key, task_key(task_id)], args=[self._ttl_s, *args]
        )
        if stored is None:
            return None
        answered = _decode_pairs(stored)
        return {name: value for name, value in {**record, **answered}.items() if value is not None}

    async def get(self, task_id: str) -> dict[str, Any] | None:
        raw = await self._redis.hgetall(task_key(task_id))
        return _decode(raw) if raw else None

    async def start(self, task_id: str, worker: str, ledger: str) -> Started:
        """Counts a new attempt and marks the task running, unless it is unknown or final;
        reads the tenant's spend in the budget ledger hash `ledger` in the same step."""
        reply = await self._start(keys=[task_key(task_id), ledger], args=[worker, time.time()])
        attempt = int(reply[0])
        if attempt < 0:
            return Started(attempt, None)
        flat = reply[2:]
        record = _decode_pairs(flat)
        return Started(attempt, record, float(reply[1]))

    async def update(self, task_id: str, fields: dict[str, Any]) -> bool:
        """False if the task is unknown or already final, and nothing was written."""
        return bool(await self._update(keys=[task_key(task_id)], args=hset_args(fields)))


def _decode(raw: dict[Any, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {text(k): text(v) for k, v in raw.items()}
    for name in _JSON_FIELDS:
        if name in record:
            record[name] = json.loads(record[name])
    for name in ("attempts", "redactions"):
        if name in record:
            record[name] = int(record[name])
    for name in ("cost_usd", "created_at", "started_at", "finished_at"):
        if name in record:
            record[name] = float(record[name])
    return record


def _decode_pairs(flat: list[Any]) -> dict[str, Any]:
    """A record as HGETALL returns it inside a script: field, value, field, value…"""
    return _decode(dict(zip(flat[::2], flat[1::2], strict=True)))


def completion(message: str) -> tuple[str, dict[str, Any] | None]:
    """A task done message: the task id, then the final record when the message carries
    it (HGETALL's field/value list as JSON after a newline). Without it, as from a
    dead-lettering worker, the waiter reads the record itself."""
    task_id, _, payload = message.partition("\n")
    if not payload:
        return task_id, None
    return task_id, _decode_pairs(json.loads(payload))


def stream_entry(task_id: str, tenant: str) -> dict[RedisValue, RedisValue]:
    return {"task_id": task_id, "tenant": tenant}


def final_fields(status: Status, fields: dict[str, Any]) -> list[RedisValue]:
    """The final write of a task record as HSET arguments: field, value, field, value…"""
    return hset_args({**fields, "status": status, "finished_at": time.time()})


def hset_args(fields: dict[str, Any]) -> list[RedisValue]:
    """Fields encoded for a script's HSET: field, value, field, value…"""
    return [item for pair in encode_fields(fields).items() for item in pair]


def encode_fields(fields: dict[str, Any]) -> dict[RedisValue, RedisValue]:
    out: dict[RedisValue, RedisValue] = {}
    for name, value in fields.items():
        if value is None:
            continue
        out[name] = json.dumps(value) if isinstance(value, dict | list | bool) else str(value)
    return out
