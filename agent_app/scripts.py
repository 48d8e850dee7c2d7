"""Every Lua script the app runs in Redis. A script is one atomic step: the task record's
writes that must not interleave with another worker's live here, side by side, so the
rule they share (a record with `finished_at` is final and never written again) is
visible in one place; so do the budget's (a reservation made with the task's admission,
charged by its calls, released with its final write: see `cost`)."""

from __future__ import annotations

from agent_app.keys import RESERVED_TOTAL


def _with_total(script: str) -> str:
    """The reservation hash's sum field (`keys.RESERVED_TOTAL`) put in for `@TOTAL@`."""
    return script.replace("@TOTAL@", RESERVED_TOTAL)


# A task's reservation released (its final write, see FINISH and DEAD_LETTER): the rest of
# what was set aside for it and not charged goes back to the tenant. A hash left with its
# sum alone is deleted, so the float sum restarts from zero and rounding cannot pile up.
_RELEASE = """
local function release(reservations, task_id)
  local held = redis.call('HGET', reservations, task_id)
  if not held then return end
  redis.call('HDEL', reservations, task_id)
  if redis.call('HLEN', reservations) <= 1 then
    redis.call('DEL', reservations)
  else
    redis.call('HINCRBYFLOAT', reservations, '@TOTAL@', string.format('%.17g', -tonumber(held)))
  end
end
"""

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

# KEYS[1] task record, KEYS[2] task stream, KEYS[3] the tenant's budget reservations;
# ARGV group, entry id, done channel, task id, then the final fields: field, value…
# Final record (the first final write wins: a redelivered task cannot overwrite it; an
# earlier attempt's `error` goes unless the final fields have one), the completion message
# for the API requests waiting on the task, the acknowledgement and the release of the
# task's budget reservation, in one step: a worker dying in between cannot leave a final
# task holding budget. The message carries the final record (see
# `tasks.completion`), so a waiting request answers without reading it back.
FINISH = (
    _with_total(_RELEASE)
    + """
release(KEYS[3], ARGV[4])
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
)

# KEYS[1] task record, KEYS[2] task stream, KEYS[3] dead-letter stream, KEYS[4] the
# tenant's budget reservations; ARGV group, entry id, n, then n final fields (field,
# value…), then the dead-letter entry (field, value…), then the task id.
# Final record, dead-letter entry, acknowledgement and release of the task's budget
# reservation in one step. A task that another worker finished in the meantime (a
# reclaimed entry racing its first owner) is only acknowledged: dead-lettering it too would
# give it two outcomes. A worker dying half way cannot leave a dead-lettered record
# without its dead-letter entry either.
DEAD_LETTER = (
    _with_total(_RELEASE)
    + """
release(KEYS[4], ARGV[#ARGV])
local n = tonumber(ARGV[3])
local written = 0
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + n))
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4 + n, #ARGV - 1))
  written = 1
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return written
"""
)

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

# KEYS[1] budget ledger of the period, KEYS[2] the tenant's reservations, KEYS[3] task
# record, KEYS[4] task stream; ARGV tenant, task id, budget, the task's expected cost, ttl,
# then the record's fields (field, value…).
# Admission: the task is written and queued (as `tasks.stream_entry`) with its expected
# cost reserved, only if spend plus every reservation plus this one fits the budget. Check
# and reservation in one step, so concurrent submissions cannot each see the same room.
# {1} admitted; {2} the record exists already (admitted by an earlier try whose answer
# was lost); {0, spent, reserved} refused, with the figures to choose again from.
ADMIT = _with_total("""
if redis.call('EXISTS', KEYS[3]) == 1 then return {2} end
local spent = redis.call('HGET', KEYS[1], ARGV[1]) or '0'
local reserved = redis.call('HGET', KEYS[2], '@TOTAL@') or '0'
-- The tolerance keeps a cost that fills the rest exactly from failing on rounding.
if tonumber(spent) + tonumber(reserved) + tonumber(ARGV[4]) > tonumber(ARGV[3]) + 1e-12 then
  return {0, spent, reserved}
end
-- The entry first: a script's writes before an error stay written, and a refused XADD
-- (an ACL rule, a stream of the wrong type) must leave no record behind that a retry
-- with the same Idempotency-Key would take for a queued task.
redis.call('XADD', KEYS[4], '*', 'task_id', ARGV[2], 'tenant', ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('HINCRBYFLOAT', KEYS[2], '@TOTAL@', ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('HSET', KEYS[3], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[3], ARGV[5])
return {1}
""")

# KEYS[1] budget ledger of the period, KEYS[2] task record, KEYS[3] the tenant's
# reservations; ARGV tenant, task id, USD, ledger ttl.
# One LLM call's cost: added to the tenant's spend and the task's cost, and taken off the
# task's reservation (down to zero: what a task spends beyond it was never set aside), so
# spend plus reservations stays what admission counted with.
CHARGE = _with_total("""
redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('HINCRBYFLOAT', KEYS[2], 'cost_usd', ARGV[3])
local held = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
if held > 0 then
  local used = math.min(held, tonumber(ARGV[3]))
  redis.call('HSET', KEYS[3], ARGV[2], string.format('%.17g', held - used))
  redis.call('HINCRBYFLOAT', KEYS[3], '@TOTAL@', string.format('%.17g', -used))
end
""")

# KEYS[1] a model's observed usage; ARGV window, then one task's figures: field, value…
# A running mean of each figure per task: the plain mean over the first `window` tasks,
# then exponentially weighted, so the estimate follows a workload that changes.
OBSERVE_USAGE = """
local n = redis.call('HINCRBY', KEYS[1], 'tasks', 1)
local weight = 1 / math.min(n, tonumber(ARGV[1]))
for i = 2, #ARGV, 2 do
  local mean = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  local value = mean + weight * (tonumber(ARGV[i + 1]) - mean)
  redis.call('HSET', KEYS[1], ARGV[i], string.format('%.17g', value))
end
"""
