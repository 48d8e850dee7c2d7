"""Every Redis key, stream and channel name the app uses, in one place.

All names start with `agent:`, so one Redis can be shared with other programs, and a
deployment sharing it with another names its own streams (`AGENT_TASK_STREAM`)."""

from __future__ import annotations

import hashlib

PREFIX = "agent"
TASK_STREAM = f"{PREFIX}:tasks"
DEAD_LETTER_STREAM = f"{PREFIX}:tasks:dead"


def done_channel(task_stream: str) -> str:
    """Pub/sub channel on which workers announce finished tasks to API requests waiting
    for them; named after the stream so deployments sharing a Redis stay apart."""
    return f"{task_stream}:done"


def outstanding_key(task_stream: str) -> str:
    """Tasks admitted and not yet final, per tenant (a hash tenant -> count; a tenant
    with none has no field): what bounded admission shares out (`scripts.ADMIT`)."""
    return f"{task_stream}:outstanding"


def throughput_key(task_stream: str) -> str:
    """The rate at which tasks leave the stream, final (a hash: `rate`, per second,
    decaying exponentially, and `at`, when it was last updated, by Redis' clock)."""
    return f"{task_stream}:throughput"


def task_key(task_id: str) -> str:
    """The task record (a hash, see `records.TaskRecord`)."""
    return f"{PREFIX}:task:{task_id}"


def idempotency_key(tenant: str, key: str) -> str:
    """A client's Idempotency-Key, hashed: it is free text of the client's choosing."""
    return f"{PREFIX}:idem:{tenant}:{hashlib.sha256(key.encode()).hexdigest()}"


def ledger_key(period: str) -> str:
    """The budget ledger of a period (`YYYY-MM`): a hash tenant -> USD spent."""
    return f"{PREFIX}:budget:{period}"


def reservations_key(tenant: str) -> str:
    """A tenant's budget reservations (a hash): task id -> USD set aside for the admitted
    task and not yet charged, and `RESERVED_TOTAL` -> their sum. Not per period: the work
    they stand for is charged to whichever period it runs in."""
    return f"{PREFIX}:reserved:{tenant}"


# The field of `reservations_key` holding the sum; never a task id (those are hex).
RESERVED_TOTAL = "_total"


def usage_key(tenant: str, model: str) -> str:
    """Token usage observed per task of a tenant's on a model (a hash, see
    `records.ModelUsage`), from which its next task's cost there is estimated."""
    return f"{PREFIX}:usage:{tenant}:{model}"


def slots_key(tenant: str) -> str:
    """The concurrency slots a limited tenant's tasks hold (a sorted set of leases)."""
    return f"{PREFIX}:slots:{tenant}"


def breaker_key(model: str) -> str:
    """Exists while the model's circuit is open."""
    return f"{PREFIX}:breaker:{model}"


def response_cache_key(tenant: str, digest: str) -> str:
    """A tenant's cached LLM response, by the digest of its normalised request. Per tenant
    (see `cache`), and under the tenant's name so its entries can be found and dropped."""
    return f"{PREFIX}:cache:{tenant}:{digest}"


def result_key(digest: str) -> str:
    """A cached task result, by the digest of its tenant, model, variant and task."""
    return f"{PREFIX}:result:{digest}"


def history_key(tenant: str, session_id: str) -> str:
    """A session's recent turns (a list)."""
    return f"{PREFIX}:session:{tenant}:{session_id}"


def memory_key(tenant: str, session_id: str) -> str:
    """A session's memory tool values (a hash)."""
    return f"{PREFIX}:memory:{tenant}:{session_id}"
