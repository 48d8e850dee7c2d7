"""Every Lua script the app runs in Redis. A script is one atomic step: the task record's
writes that must not interleave with another worker's live here, side by side, so the
rule they share (a record with `finished_at` is final and never written again) is
visible in one place."""

from __future__ import annotations

# KEYS[1] task record, KEYS[2] budget ledger; ARGV worker, started_at.
# {-2} for an unknown task, {-1} for one that already has its final result, else the new
# attempt count, the tenant's spend so far in the budget ledger, then the record as
# HGETALL gives it: the worker needs all three, and one round trip instead of three is a
# fifth of its Redis traffic per task.
START = """
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

# KEYS[1] task record; ARGV field, value, field, value…
# Progress of a running task, never over a final record: a slower duplicate attempt that
# fails after another one finished would otherwise turn "completed" back into "retrying".
UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS[1] stored result, KEYS[2] task record; ARGV ttl, then field, value, field, value…
# {} when no result is stored at KEYS[1]; else the task record KEYS[2] is written from
# ARGV and the result's fields, and those fields returned. Read and write in one round trip
# is most of what a cache hit costs the API.
CREATE_FROM_RESULT = """
local stored = redis.call('HGETALL', KEYS[1])
if #stored == 0 then return false end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
redis.call('HSET', KEYS[2], unpack(stored))
redis.call('EXPIRE', KEYS[2], ARGV[1])
return stored
"""

# KEYS[1] task record, KEYS[2] task stream; ARGV group, entry id, done channel, task id,
# then the final fields: field, value, field, value…
# Final record (the first final write wins: a redelivered task cannot overwrite it; an
# earlier attempt's `error` goes unless the final fields have one), the
# completion message for the API requests waiting on the task, and the acknowledgement, in
# one step: three round trips per task before. The message carries the final record (see
# `tasks.completion`), so a waiting request answers without reading it back.
FINISH = """
local written = 0
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 0 then
  -- An earlier attempt's error is not this result's: the final fields carry their own.
  redis.call('HDEL', KEYS[1], 'error')
  redis.call('HSET', KEYS[1], unpack(ARGV, 5))
  written = 1
end
local record = redis.call('HGETALL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. '\\n' .. cjson.encode(record))
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return written
"""

# KEYS[1] task record, KEYS[2] task stream, KEYS[3] dead-letter stream; ARGV group, entry
# id, n, then n final fields (field, value…), then the dead-letter entry (field, value…).
# Final record, dead-letter entry and acknowledgement in one step. A task that another
# worker finished in the meantime (a reclaimed entry racing its first owner) is only
# acknowledged: dead-lettering it too would give it two outcomes. A worker dying half way
# cannot leave a dead-lettered record without its dead-letter entry either.
DEAD_LETTER = """
local n = tonumber(ARGV[3])
local written = 0
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + n))
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4 + n))
  written = 1
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return written
"""

# KEYS[1] task record, KEYS[2] task stream, KEYS[3] dead-letter stream; ARGV record ttl,
# k, then k dead-letter entry ids, then the task stream entry (field, value…).
# An operator's replay of a dead-lettered task: the record back to queued with a fresh
# count of attempts and no final fields (so the first final write wins again), a new
# stream entry, and its dead-letter entries gone, in one step. False, and nothing
# changed, unless the task is dead-lettered: a replay cannot reopen a completed task, nor
# queue one twice.
REPLAY = """
if redis.call('HGET', KEYS[1], 'status') ~= 'dead_lettered' then return false end
redis.call('HDEL', KEYS[1], 'finished_at', 'error', 'result', 'steps', 'tokens',
  'redactions', 'worker', 'started_at')
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0)
redis.call('EXPIRE', KEYS[1], ARGV[1])
local k = tonumber(ARGV[2])
for i = 3, 2 + k do redis.call('XDEL', KEYS[3], ARGV[i]) end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3 + k))
"""

# KEYS[1] a tenant's slots; ARGV now, limit, holder, lease seconds.
# A sorted set of holders scored by lease expiry: a worker that dies without releasing
# its slot loses it when the lease runs out, so a crash cannot shrink the limit forever.
ACQUIRE_SLOT = """
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
