"""The dead-letter stream as operators see it: list, inspect and replay the tasks that
ran out of attempts (`agent-app dlq ...`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from redis.asyncio import Redis

from agent_app import scripts
from agent_app.keys import task_key
from agent_app.records import TaskRecord, TaskView
from agent_app.settings import Settings
from agent_app.tasks import TaskStore, stream_entry

# Entries read from the stream per round trip while scanning it.
_PAGE = 500


class DeadLetter(BaseModel):
    """One entry of the dead-letter stream, as the worker wrote it."""

    entry: str
    task_id: str
    tenant: str
    attempts: int
    error: str
    dead_lettered_at: str

    @classmethod
    def of(cls, entry_id: str, fields: dict[str, str]) -> DeadLetter:
        millis = int(entry_id.partition("-")[0])
        return cls(
            entry=entry_id,
            task_id=fields.get("task_id", ""),
            tenant=fields.get("tenant", ""),
            attempts=int(fields.get("attempts") or 0),
            error=fields.get("error", ""),
            dead_lettered_at=datetime.fromtimestamp(millis / 1000, UTC).isoformat(),
        )


class Inspection(BaseModel):
    """A dead-lettered task: its dead-letter entries and its record (None once expired),
    shown as the tenant would see it, with the tenant named."""

    task_id: str
    tenant: str | None
    dead_letters: list[DeadLetter]
    task: TaskView | None


class Replayed(BaseModel):
    task_id: str
    replayed: bool
    entry: str | None = None
    reason: str | None = None


class DeadLetters:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._store = TaskStore(redis, settings.task_ttl_s)
        self._replay = redis.register_script(scripts.REPLAY)

    async def entries(
        self, tenant: str | None = None, limit: int | None = None
    ) -> list[DeadLetter]:
        """Oldest first."""
        found: list[DeadLetter] = []
        start = "-"
        while limit is None or len(found) < limit:
            page: Any = await self._redis.xrange(
                self._settings.dead_letter_stream, min=start, count=_PAGE
            )
            for entry_id, fields in page:
                letter = DeadLetter.of(entry_id, fields)
                if tenant is None or letter.tenant == tenant:
                    found.append(letter)
            if len(page) < _PAGE:
                break
            start = "(" + page[-1][0]
        return found[:limit]

    async def inspect(self, task_id: str) -> Inspection | None:
        """None when the task is neither in the dead-letter stream nor stored."""
        letters = [d for d in await self.entries() if d.task_id == task_id]
        record = await self._store.get(task_id)
        if not letters and record is None:
            return None
        tenant = record.tenant if record else letters[0].tenant
        view = TaskView.of(record) if record else None
        return Inspection(task_id=task_id, tenant=tenant, dead_letters=letters, task=view)

    async def replay(self, task_id: str) -> Replayed:
        """Queues a dead-lettered task again with a fresh count of attempts."""
        letters = [d for d in await self.entries() if d.task_id == task_id]
        record: TaskRecord | None = await self._store.get(task_id)
        if record is None:
            return Replayed(task_id=task_id, replayed=False, reason="no task record (expired?)")
        if record.status != "dead_lettered":
            return Replayed(
                task_id=task_id,
                replayed=False,
                reason=f"task is {record.status}, not dead-lettered",
            )
        entry = stream_entry(task_id, record.tenant)
        new_entry = await self._replay(
            keys=[task_key(task_id), self._settings.task_stream, self._settings.dead_letter_stream],
            args=[
                self._settings.task_ttl_s,
                len(letters),
                *(d.entry for d in letters),
                *(item for pair in entry.items() for item in pair),
            ],
        )
        if new_entry is None:
            # Replayed (or changed) by someone else between the read and the script.
            return Replayed(
                task_id=task_id, replayed=False, reason="task is no longer dead-lettered"
            )
        return Replayed(task_id=task_id, replayed=True, entry=str(new_entry))
