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


class Waiter:
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
    that it is final. A waiting request costs nothing while it waits beyond its entry
    here: no Redis command, no timer but its deadline. It reads the task only when it
    starts waiting on a task it did not just queue, when woken without the final record
    (the subscription came back after a break, in which a message may have been lost),
    and once at its deadline. (Polling the record instead cost a Redis round trip per
    waiting request every 50 ms, and later every 0.5 s, which a backlog multiplied.)"""

    def __init__(self, redis: Redis, channel: str, store: TaskStore) -> None:
        self._redis = redis
        self._channel = channel
        self._store = store
        self._waiters: dict[str, set[Waiter]] = {}

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
                # Never give up: without the listener every wait lasts until its deadline.
                log.warning("task done channel unavailable; retrying", error=type(exc).__name__)
                await asyncio.sleep(1)

    @contextlib.contextmanager
    def waiting(self, task_id: str) -> Iterator[Waiter]:
        """Registers a request waiting for the task: before the task is queued, so no
        completion message can come before it is there to hear it."""
        waiter = Waiter()
        self._waiters.setdefault(task_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters[task_id]
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[task_id]

    async def wait_final(
        self, waiter: Waiter, task_id: str, wait_s: float, queued: bool
    ) -> TaskRecord | None:
        """The task once final, or as it is after `wait_s`; None if it is gone. A task
        `queued` by this request, with `waiter` registered before, is not read before its
        completion message: it cannot be final sooner."""
        deadline = time.monotonic() + wait_s
        if not queued:
            record = await self._store.get(task_id)
            if record is None or record.final:
                return record
        while await _woken(waiter.event, deadline):
            announced = waiter.take()
            if announced is not None and announced.final:
                return announced
            # Cleared before the read: a message arriving after it is never missed.
            waiter.event.clear()
            record = await self._store.get(task_id)
            if record is None or record.final:
                return record
        return await self._store.get(task_id)

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


async def _woken(event: asyncio.Event, deadline: float) -> bool:
    """Until the event is set (True) or the deadline passes (False): one timer, not one
    per interval."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return event.is_set()
    try:
        async with asyncio.timeout(remaining):
            await event.wait()
    except TimeoutError:
        return False
    return True
