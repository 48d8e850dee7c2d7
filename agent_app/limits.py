"""Per-tenant concurrency slots shared by every worker through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis

# A sorted set of holders scored by lease expiry: a worker that dies without releasing
# its slot loses it when the lease runs out, so a crash cannot shrink the limit forever.
_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[3])
if held or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4])))
  return 1
end
return 0
"""


class TenantSlots:
    def __init__(self, redis: Redis, limit: int, lease_s: float, poll_s: float = 0.1) -> None:
        self._redis = redis
        self._limit = limit
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._acquire = redis.register_script(_ACQUIRE)

    async def _try(self, key: str, holder: str) -> bool:
        args: list[str | float] = [time.time(), self._limit, holder, self._lease_s]
        return bool(await self._acquire(keys=[key], args=args))

    @contextlib.asynccontextmanager
    async def hold(self, tenant: str, holder: str) -> AsyncIterator[None]:
        key = f"agent:slots:{tenant}"
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
