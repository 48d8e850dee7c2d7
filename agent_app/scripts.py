"""Every Lua script the app runs in Redis. A script is one atomic step: the task record's
writes that must not interleave with another worker's live here, side by side, so the
rule they share (a record with `finished_at` is final and never written again) is
visible in one place; so do the budget's (a reservation made with the task's admission,
charged by its calls, released with its final write: see `cost`) and bounded admission's
(the tenants' outstanding tasks counted with the reservations, the rate at which tasks
finish updated by their final write: see `admission`).

Each step of a task is one script, so one round trip: the admission, a worker's start,
each LLM call's charge, the final write."""

from __future__ import annotations

from agent_app.keys import RESERVED_TOTAL

# The time constant, in seconds, of the finishing rate's exponential decay: long enough
# to smooth bursts, short enough to follow the workers scaling, the LLM slowing down and
# the offered load rising. A rate that lags a rising load refuses work the service has
# room for: with 10 s, a step from 50 to 75 tasks/s on one core refused 31 of 450 tasks
# at 54 ms of p99 overhead (the peer benchmark's capacity steps).
THROUGHPUT_WINDOW_S = 2


def _filled(script: str) -> str:
    """The reservation hash's sum field (`keys.RESERVED_TOTAL`) put in for `@TOTAL@`,
    the throughput's time constant for `@WINDOW@`."""
    return script.replace("@TOTAL@", RESERVED_TOTAL).replace("@WINDOW@", str(THROUGHPUT_WINDOW_S))


# A task's reservation released (its final write, see FINISH and DEAD_LETTER): the rest of
# what was set aside for it and not charged goes back to the tenant, and it no longer
# counts among the tenant's outstanding tasks. A hash left with its sum alone is deleted,
# so the float sum restarts from zero and rounding cannot pile up. The reservation exists
# from admission to the first final write, so a second final write (a redelivered task)
# releases nothing and counts nothing twice.
_RELEASE = """
local function release(reservations, task_id, outstanding, tenant)
  local held = redis.call('HGET', reservations, task_id)
  if not held then return end
  redis.call('HDEL', reservations, task_id)
  if redis.call('HLEN', reservations) <= 1 then
    redis.call('DEL', reservations)
  else
    redis.call('HINCRBYFLOAT', reservations, '@TOTAL@', string.format('%.17g', -tonumber(held)))
  end
  if redis.call('HINCRBY', outstanding, tenant, -1) <= 0 then
    redis.call('HDEL', outstanding, tenant)
  end
end
"""

# The rate at which tasks finish (per second), by Redis' clock, so every replica reads
# and writes the same one: each final write adds 1/window, and the sum decays by
# exp(-elapsed/window). With tasks finishing at a steady rate it settles on that rate.
_THROUGHPUT = """
local function clock()
  local now = redis.call('TIME')
  return tonumber(now[1]) + tonumber(now[2]) / 1e6
end
local function rate_at(key, now)
  local stored = redis.call('HMGET', key, 'rate', 'at')
  if not stored[1] then return 0 end
  return tonumber(stored[1]) * math.exp(-math.max(0, now - tonumber(stored[2])) / @WINDOW@)
end
local function finished_one(key)
  local now = clock()
  local rate = rate_at(key, now) + 1 / @WINDOW@
  redis.call('HSET', key, 'rate', string.format('%.17g', rate), 'at', string.format('%.17g', now))
end
"""

# Running means of one task's figures (`usage`): the plain mean over the first `window`
# tasks, then exponentially weighted, so the estimate follows a workload that changes.
_OBSERVE = """
local function observe(key, window, figures)
  local n = redis.call('HINCRBY', key, 'tasks', 1)
  local weight = 1 / math.min(n, tonumber(window))
  for i = 1, #figures, 2 do
    local mean = tonumber(redis.call('HGET', key, figures[i]) or '0')
    local value = mean + weight * (tonumber(figures[i + 1]) - mean)
    redis.call('HSET', key, figures[i], string.format('%.17g', value))
  end
end
"""

# What a task's first final write also writes (`queue.FinalWrite`), as a JSON list; the
# i-th write's key is the i-th key after the script's own. `hash`: fields stored with a
# ttl (a result for the result cache); `list`: items appended, the last `keep` kept, with
# a ttl (a session's history); `means`: figures folded into running means (usage).
_FINAL_WRITES = (
    _OBSERVE
    + """
local function final_writes(writes, first_key)
  for i, w in ipairs(cjson.decode(writes)) do
    local key = KEYS[first_key + i - 1]
    if w.hash then
      redis.call('HSET', key, unpack(w.hash))
      redis.call('EXPIRE', key, w.ttl)
    elseif w.list then
      redis.call('RPUSH', key, unpack(w.list))
      redis.call('LTRIM', key, -w.keep, -1)
      redis.call('EXPIRE', key, w.ttl)
    elseif w.means then
      observe(key, w.window, w.means)
    end
  end
end
"""
)

# KEYS[1] task record, KEYS[2] budget ledger, KEYS[3…] the models' breaker keys; ARGV
# worker, started_at.
# {-2} for an unknown task, {-1} for one that already has its final result, else the new
# attempt count, the tenant's spend so far in the budget ledger, which of the breaker keys
# exist (1 or 0 each: circuits open on some replica), then the record as HGETALL gives
# it: the worker needs all four before its first call, in one round trip.
START = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 1 then return {-1} end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started_at', ARGV[2])
local spent = redis.call('HGET', KEYS[2], redis.call('HGET', KEYS[1], 'tenant') or '') or '0'
local open = {}
for i = 3, #KEYS do open[#open + 1] = redis.call('EXISTS', KEYS[i]) end
local record = redis.call('HGETALL', KEYS[1])
table.insert(record, 1, open)
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

# KEYS[1] task record, KEYS[2] task stream, KEYS[3] the tenant's budget reservations,
# KEYS[4] the outstanding tasks, KEYS[5] the throughput, KEYS[6…] the keys of the final
# writes; ARGV group, entry id, done channel, task id, tenant, the final writes (JSON,
# see _FINAL_WRITES), then the final fields: field, value…
# Final record (the first final write wins: a redelivered task cannot overwrite it; an
# earlier attempt's `error` goes unless the final fields have one), what goes with it
# (its result for the result cache or its turn in the session's history, its usage), the
# completion message for the API requests waiting on the task, the acknowledgement, the
# release of the task's budget reservation and the finishing rate, in one step: a worker
# dying in between cannot leave a final task holding budget or a history without the
# turn. The message carries the final record (see `tasks.completion`), so a waiting
# request answers without reading it back.
FINISH = _filled(
    _RELEASE
    + _THROUGHPUT
    + _FINAL_WRITES
    + """
release(KEYS[3], ARGV[4], KEYS[4], ARGV[5])
local written = 0
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 0 then
  -- An earlier attempt's error is not this result's: the final fields carry their own.
  redis.call('HDEL', KEYS[1], 'error')
  redis.call('HSET', KEYS[1], unpack(ARGV, 7))
  finished_one(KEYS[5])
  written = 1
end
local record = redis.call('HGETALL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. '\\n' .. cjson.encode(record))
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
-- Last: a script's writes before an error stay written, and a key of the wrong type here
-- must not keep the task from being final, announced and acknowledged.
if written == 1 then final_writes(ARGV[6], 6) end
return written
"""
)

# KEYS[1] task record, KEYS[2] task stream, KEYS[3] dead-letter stream, KEYS[4] the
# tenant's budget reservations, KEYS[5] the outstanding tasks, KEYS[6] the throughput;
# ARGV group, entry id, done channel, task id, tenant, n, then n final fields (field,
# value…), then the dead-letter entry (field, value…).
# Final record, dead-letter entry, completion message, acknowledgement and release of the
# task's budget reservation in one step. A task that another worker finished in the
# meantime (a reclaimed entry racing its first owner) is only acknowledged: dead-lettering
# it too would give it two outcomes. A worker dying half way cannot leave a dead-lettered
# record without its dead-letter entry either.
DEAD_LETTER = _filled(
    _RELEASE
    + _THROUGHPUT
    + """
release(KEYS[4], ARGV[4], KEYS[5], ARGV[5])
local n = tonumber(ARGV[6])
local written = 0
if redis.call('HEXISTS', KEYS[1], 'finished_at') == 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 7, 6 + n))
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, 7 + n))
  finished_one(KEYS[6])
  written = 1
end
local record = redis.call('HGETALL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. '\\n' .. cjson.encode(record))
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
# record, KEYS[4] task stream, KEYS[5] the outstanding tasks, KEYS[6] the throughput,
# KEYS[7] (optional) the task's stored result; ARGV tenant, task id, budget, the task's
# expected cost, ttl, the admission's latency limit (s), its floor (tasks), n, then n
# fields (field, value…) that make the record final when answered from the stored result,
# then the record's fields (field, value…).
# Admission, in the order of what decides: a record that exists already ({2}: admitted by
# an earlier try whose answer was lost); the stored result ({3, its fields…}: the record
# is written final, answered from it, with no reservation, queue or load); the load
# ({4, outstanding, limit, the tenant's outstanding, tenants with outstanding tasks,
# rate}: refused, see `admission`); the budget ({0, spent, reserved}: refused, with the
# figures to choose again from). Else the task is written and queued (as
# `tasks.stream_entry`) with its expected cost reserved and counted as the tenant's
# ({1}). Checks and writes in one step, so concurrent submissions cannot each see the
# same room, in the budget or in the queue.
ADMIT = _filled(
    _THROUGHPUT
    + """
if redis.call('EXISTS', KEYS[3]) == 1 then return {2} end
local n = tonumber(ARGV[8])
if KEYS[7] then
  local stored = redis.call('HGETALL', KEYS[7])
  if #stored > 0 then
    redis.call('HSET', KEYS[3], unpack(ARGV, 9 + n))
    redis.call('HSET', KEYS[3], unpack(ARGV, 9, 8 + n))
    redis.call('HSET', KEYS[3], unpack(stored))
    redis.call('EXPIRE', KEYS[3], ARGV[5])
    table.insert(stored, 1, 3)
    return stored
  end
end
local outstanding = redis.call('XLEN', KEYS[4])
local rate = rate_at(KEYS[6], clock())
local limit = math.max(tonumber(ARGV[7]), rate * tonumber(ARGV[6]))
if outstanding >= limit then
  -- Full. A tenant below its fair share of the limit (among the tenants with work) is
  -- still admitted, up to twice the limit: one tenant's backlog cannot lock out another.
  local mine = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
  local tenants = redis.call('HLEN', KEYS[5])
  if mine == 0 then tenants = tenants + 1 end
  if mine >= limit / tenants or outstanding >= 2 * limit then
    return {4, outstanding, string.format('%.17g', limit), mine, tenants,
      string.format('%.17g', rate)}
  end
end
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
redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
redis.call('HSET', KEYS[3], unpack(ARGV, 9 + n))
redis.call('EXPIRE', KEYS[3], ARGV[5])
return {1}
"""
)

# KEYS[1] budget ledger of the period, KEYS[2] task record, KEYS[3] the tenant's
# reservations, KEYS[4] the call's response cache entry; ARGV tenant, task id, USD,
# ledger ttl, the reply as cached, its ttl.
# One LLM call's cost: added to the tenant's spend and the task's cost, and taken off the
# task's reservation (down to zero: what a task spends beyond it was never set aside), so
# spend plus reservations stays what admission counted with; and the reply cached, in the
# same step, so a reply is never cached without its cost charged.
CHARGE = _filled("""
redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('HINCRBYFLOAT', KEYS[2], 'cost_usd', ARGV[3])
local held = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
if held > 0 then
  local used = math.min(held, tonumber(ARGV[3]))
  redis.call('HSET', KEYS[3], ARGV[2], string.format('%.17g', held - used))
  redis.call('HINCRBYFLOAT', KEYS[3], '@TOTAL@', string.format('%.17g', -used))
end
redis.call('SET', KEYS[4], ARGV[5], 'EX', ARGV[6])
""")
