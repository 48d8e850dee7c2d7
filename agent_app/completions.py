"""Requests waiting for a task (`?wait=`), woken when a worker announces it final."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from redis.asyncio import Redis

from agent_app.logging import get_logger
from agent_app.records import TaskRecord
from agent_app.tasks import TaskStore, completion

log = get_logger(__name__)

# A waiting request re-reads its task at least this often, so a completion message lost
# while the subscription reconnects (or never sent by an older worker) delays it only so long.
_RECHECK_S = 0.5


class _Waiter:
    """One request waiting for a task: woken by its completion message, which hands over
    the final record when it carries one."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.record: TaskRecord | None = None

    def take(self) -> TaskRecord | None:
        record, self.record = self.record, None
        return record


class Completions:
    """Wakes requests waiting for a task when a worker announces on the task done channel
    that it is final. Polling the record instead cost a Redis round trip per waiting
    request every 50 ms and added up to 50 ms to every answer."""

    def __init__(self, redis: Redis, channel: str, store: TaskStore) -> None:
        self._redis = redis
        self._channel = channel
        self._store = store
        self._waiters: dict[str, set[_Waiter]] = {}

    async def listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    # Whatever finished while unsubscribed is found by re-reading.
                    self._wake_all()
                    async for message in pubsub.listen():
                        self._deliver(message["data"])
            except Exception as exc:
                # Never give up: without the listener every wait degrades to re-reading.
                log.warning("task done channel unavailable; retrying", error=type(exc).__name__)
                await asyncio.sleep(1)

    async def wait_final(self, task_id: str, wait_s: float, queued: bool) -> TaskRecord | None:
        """The task once final, or as it is after `wait_s`; None if it is gone. A task
        `queued` just now is not read before its completion message (or the first
        re-check): it cannot be final yet."""
        deadline = time.monotonic() + wait_s
        with self._waiting(task_id) as waiter:
            if queued:
                # The waiter was registered before any await since the enqueue, so only a
                # task finished faster than that Redis reply came back could be announced
                # unheard, and it costs one re-check.
                await _woken(waiter.event, deadline)
            while True:
                announced = waiter.take()
                if announced is not None and announced.final:
                    return announced
                # Cleared before the read: a message arriving after it is never missed.
                waiter.event.clear()
                record = await self._store.get(task_id)
                if record is None or record.final or time.monotonic() >= deadline:
                    return record
                await _woken(waiter.event, deadline)

    def _deliver(self, message: str) -> None:
        # Every replica hears every task: only a waited-for one is worth decoding.
        task_id = message.partition("\n")[0]
        waiters = self._waiters.get(task_id)
        if not waiters:
            return
        record = completion(message)[1]
        for waiter in waiters:
            waiter.record = record
            waiter.event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()

    @contextlib.contextmanager
    def _waiting(self, task_id: str) -> Iterator[_Waiter]:
        waiter = _Waiter()
        self._waiters.setdefault(task_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters[task_id]
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[task_id]


async def _woken(event: asyncio.Event, deadline: float) -> None:
    """Until the event is set, the next re-check is due or the deadline passes."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), max(0.0, min(deadline - time.monotonic(), _RECHECK_S)))
