"""Task records in Redis: created by the API, advanced by workers, final exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import NamedTuple

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from agent_app import scripts
from agent_app.admission import Limits, Load
from agent_app.cost import Reservation
from agent_app.keys import breaker_key, outstanding_key, task_key, throughput_key
from agent_app.logging import get_logger
from agent_app.records import Outcome, TaskRecord
from agent_app.runtime import text

log = get_logger(__name__)


class Started(NamedTuple):
    """-2: unknown task, -1: already final (no record then), else the attempt now starting,
    with the task's record, its tenant's spend in the ledger the worker named and the
    models whose circuit some replica published open."""

    attempt: int
    record: TaskRecord | None
    spent_usd: float = 0.0
    open_models: frozenset[str] = frozenset()


class Admission(NamedTuple):
    """What `TaskStore.admit` did: wrote and queued the task (or found it written by an
    earlier try), answered it from a stored result (`answered`, its final record), refused
    it for the load (`load`), or refused it for the budget (`admitted` false, with the
    spend and reservations it found, to choose again from)."""

    admitted: bool
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    answered: TaskRecord | None = None
    load: Load | None = None
    # Admitted, by an earlier try whose answer was lost: it may have run since.
    existed: bool = False


class TaskStore:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._start = redis.register_script(scripts.START)
        self._update = redis.register_script(scripts.UPDATE)
        self._admit = redis.register_script(scripts.ADMIT)

    async def create(self, record: TaskRecord) -> None:
        """Writes a task record as it is, unqueued and with nothing reserved: for tasks put
        on the stream by other means (tests, replays). The API admits tasks (`admit`)."""
        key = task_key(record.id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, items=record.hset_args())
            pipe.expire(key, self._ttl_s)
            await pipe.execute()

    async def admit(
        self,
        record: TaskRecord,
        stream: str,
        reservation: Reservation,
        limits: Limits,
        result_key: str | None = None,
    ) -> Admission:
        """Writes a new task record and queues it on `stream`, with its expected cost
        reserved, if the service's load (`admission`) and the tenant's budget, beside its
        spend and its other reservations, allow it; nothing is written otherwise. With
        `result_key`, a result stored there answers the task instead: its record is
        written final from it, and nothing is queued, reserved or limited. Checks and
        writes are one step (`scripts.ADMIT`): Redis failing between separate writes would
        leave a record no worker ever sees, or budget reserved for a task that does not
        exist."""
        answered = Outcome(status="completed", finished_at=record.created_at).hset_args()
        keys = [
            reservation.ledger_key,
            reservation.reservations_key,
            task_key(record.id),
            stream,
            outstanding_key(stream),
            throughput_key(stream),
        ]
        if result_key is not None:
            keys.append(result_key)
        reply = await self._admit(
            keys=keys,
            args=[
                reservation.tenant,
                record.id,
                repr(reservation.budget_usd),
                repr(reservation.usd),
                self._ttl_s,
                repr(limits.max_latency_s),
                limits.min_tasks,
                len(answered) if result_key is not None else 0,
                *(answered if result_key is not None else []),
                *record.hset_args(),
            ],
        )
        code = int(reply[0])
        if code == 0:
            return Admission(False, float(reply[1]), float(reply[2]))
        if code == 3:
            stored = dict(zip(answered[::2], answered[1::2], strict=True))
            stored.update(zip(reply[1::2], reply[2::2], strict=True))
            return Admission(False, answered=TaskRecord.decode({**record.encode(), **stored}))
        if code == 4:
            return Admission(False, load=Load.from_reply(reply))
        return Admission(True, existed=code == 2)

    async def get(self, task_id: str) -> TaskRecord | None:
        raw = await self._redis.hgetall(task_key(task_id))
        if not raw:
            return None
        try:
            return TaskRecord.decode({text(k): text(v) for k, v in raw.items()})
        except ValueError as exc:  # pydantic's ValidationError, or a field that is not JSON
            # Not a record the API wrote, e.g. a late cost write to an expired task key:
            # as good as missing.
            log.warning("task record undecodable", task_id=task_id, error=type(exc).__name__)
            return None

    async def start(
        self, task_id: str, worker: str, ledger: str, models: Sequence[str] = ()
    ) -> Started:
        """Counts a new attempt and marks the task running, unless it is unknown or final;
        reads the tenant's spend in the budget ledger hash `ledger` and which of `models`
        have their circuit open (`runtime.BreakerBoard`) in the same step."""
        reply = await self._start(
            keys=[task_key(task_id), ledger, *(breaker_key(m) for m in models)],
            args=[worker, time.time()],
        )
        attempt = int(reply[0])
        if attempt < 0:
            return Started(attempt, None)
        open_models = frozenset(m for m, flag in zip(models, reply[2], strict=True) if flag)
        return Started(attempt, TaskRecord.decode_pairs(reply[3:]), float(reply[1]), open_models)

    async def update(self, task_id: str, progress: Outcome) -> bool:
        """False if the task is unknown or already final, and nothing was written."""
        return bool(await self._update(keys=[task_key(task_id)], args=progress.hset_args()))


def completion(message: str) -> tuple[str, TaskRecord | None]:
    """A task done message: the task id, then the final record when the message carries
    it (HGETALL's field/value list as JSON after a newline). Without it, as from a
    dead-lettering worker, the waiter reads the record itself."""
    task_id, _, payload = message.partition("\n")
    if not payload:
        return task_id, None
    return task_id, TaskRecord.decode_pairs(json.loads(payload))


def stream_entry(task_id: str, tenant: str) -> dict[FieldT, EncodableT]:
    return {"task_id": task_id, "tenant": tenant}
