"""The task queue: a Redis Stream read through a consumer group, plus a dead-letter stream."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from agent_app import scripts
from agent_app.keys import (
    done_channel,
    outstanding_key,
    reservations_key,
    task_key,
    throughput_key,
)
from agent_app.records import Outcome
from agent_app.runtime import text
from agent_app.settings import Settings
from agent_app.tasks import stream_entry

Entry = tuple[str, dict[str, str]]


class FinalWrite(NamedTuple):
    """A write made with a task's first final write, in the same step (`scripts.FINISH`):
    at `key`, what `spec` says, one of `{"hash": [field, value…], "ttl": s}`,
    `{"list": [item…], "keep": n, "ttl": s}` or `{"means": [field, value…], "window": n}`
    (see `scripts._FINAL_WRITES`)."""

    key: str
    spec: dict[str, Any]


@dataclass(frozen=True)
class Backlog:
    """`lag`: entries not yet delivered to any worker, the real backlog; `pending`:
    delivered and not yet acknowledged (running, or awaiting reclaim)."""

    lag: int
    pending: int


class TaskQueue:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self.stream = settings.task_stream
        self.group = settings.consumer_group
        self.dead_stream = settings.dead_letter_stream
        self.done_channel = done_channel(settings.task_stream)
        self._dead_letter = redis.register_script(scripts.DEAD_LETTER)
        self._finish = redis.register_script(scripts.FINISH)

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def enqueue(self, task_id: str, tenant: str) -> str:
        entry_id = await self._redis.xadd(self.stream, stream_entry(task_id, tenant))
        return text(entry_id)

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        response: Any = await self._redis.xreadgroup(
            self.group, consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        entries: list[Entry] = []
        for _stream, items in response or []:
            entries.extend((entry_id, fields) for entry_id, fields in items if fields)
        return entries

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Takes over entries another consumer left pending for at least `min_idle_ms`."""
        response: Any = await self._redis.xautoclaim(
            self.stream, self.group, consumer, min_idle_time=min_idle_ms, count=count
        )
        claimed = response[1]
        return [(entry_id, fields) for entry_id, fields in claimed if fields]

    async def touch(self, consumer: str, entry_ids: list[str]) -> None:
        """Resets the idle time of entries still being worked on, so no one reclaims them."""
        if entry_ids:
            ids: list[int | bytes | str | memoryview] = list(entry_ids)
            await self._redis.xclaim(
                self.stream,
                self.group,
                consumer,
                min_idle_time=0,
                message_ids=ids,
                justid=True,
            )

    async def release(self, consumer: str, entry_ids: list[str], claim_idle_ms: int) -> None:
        """Hands entries this consumer holds but will not (or no longer) work on to the
        next worker that looks for idle ones: their idle time is set to the claim idle
        time at once (`XCLAIM ... IDLE`), instead of another worker waiting that long."""
        if entry_ids:
            ids: list[int | bytes | str | memoryview] = list(entry_ids)
            await self._redis.xclaim(
                self.stream,
                self.group,
                consumer,
                min_idle_time=0,
                message_ids=ids,
                idle=claim_idle_ms,
                justid=True,
            )

    async def ack(self, entry_id: str) -> None:
        # Deleting acknowledged entries keeps the stream short; they are all before the
        # group's last delivered id, so the group's lag stays computable.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()

    async def finish(
        self,
        entry_id: str,
        task_id: str,
        tenant: str,
        outcome: Outcome,
        writes: Sequence[FinalWrite] = (),
    ) -> bool:
        """Writes the task's final result and what goes with it (`writes`), announces it,
        acknowledges the entry and releases the task's budget reservation, in one step;
        False if the task already had a final result, which is then kept, and `writes`
        are not made."""
        written = await self._finish(
            keys=[
                task_key(task_id),
                self.stream,
                *self._release_keys(tenant),
                *(w.key for w in writes),
            ],
            args=[
                self.group,
                entry_id,
                self.done_channel,
                task_id,
                tenant,
                json.dumps([w.spec for w in writes]),
                *_final(outcome),
            ],
        )
        return bool(written)

    def _release_keys(self, tenant: str) -> list[str]:
        """The keys a final write releases the task from (`scripts._RELEASE`) and counts
        it finished in (`scripts._THROUGHPUT`), in the order FINISH and DEAD_LETTER take."""
        return [reservations_key(tenant), outstanding_key(self.stream), throughput_key(self.stream)]

    async def dead_letter(
        self, entry_id: str, task_id: str, tenant: str, fields: dict[str, str]
    ) -> bool:
        """Marks the task dead-lettered, moves its entry to the dead-letter stream, announces
        it and releases its budget reservation, unless the task already has a final result;
        False then, and the entry is only acknowledged."""
        final = _final(Outcome(status="dead_lettered", error=fields.get("error")))
        entry = [item for pair in fields.items() for item in pair]
        written = await self._dead_letter(
            keys=[
                task_key(task_id),
                self.stream,
                self.dead_stream,
                *self._release_keys(tenant),
            ],
            args=[
                self.group,
                entry_id,
                self.done_channel,
                task_id,
                tenant,
                len(final),
                *final,
                *entry,
            ],
        )
        return bool(written)

    async def backlog(self) -> Backlog:
        """The consumer group's lag and pending count, read as KEDA's redis-streams scaler
        reads them (XINFO GROUPS), so the app's metrics and the autoscaler agree."""
        try:
            groups: list[dict[str, Any]] = await self._redis.xinfo_groups(self.stream)
        except ResponseError:
            return Backlog(lag=0, pending=0)  # no stream yet: nothing queued
        for group in groups:
            if group["name"] == self.group:
                pending = int(group["pending"])
                lag = group.get("lag")
                if lag is None:
                    # Redis cannot compute lag across deleted entries; count the stream.
                    # (Only acknowledged entries are deleted, all before the group's last
                    # delivered id, so Redis keeps it computable in practice.)
                    lag = max(0, await self._redis.xlen(self.stream) - pending)
                return Backlog(lag=int(lag), pending=pending)
        # No group yet: every entry waits, as KEDA counts it (XLEN) in that case too.
        return Backlog(lag=int(await self._redis.xlen(self.stream)), pending=0)


def _final(outcome: Outcome) -> list[str]:
    """The final write of a task record as HSET arguments: its `finished_at` marks it final."""
    return outcome.model_copy(update={"finished_at": time.time()}).hset_args()
