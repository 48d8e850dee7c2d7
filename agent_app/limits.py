"""Per-tenant concurrency slots shared by every worker through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from agent_app import scripts
from agent_app.keys import slots_key


class TenantSlots:
    """At most `limit` of a tenant's tasks at once across all workers. A task waiting for
    a slot polls Redis for one; within a worker, only as many of a tenant's waiting tasks
    as could ever hold slots poll at once (a local semaphore of `limit`), the others wait
    on it without a Redis command or a timer of their own: a worker full of one limited
    tenant's tasks would otherwise send ten commands a second for each of them."""

    def __init__(self, redis: Redis, limit: int, lease_s: float, poll_s: float = 0.1) -> None:
        self._redis = redis
        self._limit = limit
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._acquire = redis.register_script(scripts.ACQUIRE_SLOT)
        self._local: dict[str, asyncio.Semaphore] = {}

    async def _try(self, key: str, holder: str) -> bool:
        args: list[str | float] = [time.time(), self._limit, holder, self._lease_s]
        return bool(await self._acquire(keys=[key], args=args))

    @contextlib.asynccontextmanager
    async def hold(self, tenant: str, holder: str) -> AsyncIterator[None]:
        # One per tenant that was ever limited here: as many as there are tenants at most.
        local = self._local.setdefault(tenant, asyncio.Semaphore(self._limit))
        async with local, self._held(slots_key(tenant), holder):
            yield

    @contextlib.asynccontextmanager
    async def _held(self, key: str, holder: str) -> AsyncIterator[None]:
        while not await self._try(key, holder):
            await asyncio.sleep(self._poll_s)
        renewer = asyncio.create_task(self._renew(key, holder))
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._redis.zrem(key, holder)

    async def _renew(self, key: str, holder: str) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            await self._try(key, holder)
