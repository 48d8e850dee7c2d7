"""Bounded admission: the API refuses at once the work the service cannot do in time,
instead of queueing it for longer than anyone waits for it.

The limit is on the tasks outstanding (admitted and not yet final: queued, or running),
against the rate at which tasks finish. By Little's law a new task takes about
outstanding / rate to finish, so the service admits while

    outstanding < limit = max(AGENT_ADMISSION_MIN_TASKS, rate x AGENT_ADMISSION_MAX_LATENCY_S)

The rate is measured in Redis (each final write adds to an exponentially decaying sum,
see `scripts._THROUGHPUT`), so it follows the workers however many there are; the floor
lets an idle service, whose rate has decayed to nothing, take work again. The check runs
in the admission script (`scripts.ADMIT`) with the budget's, atomically and in the same
round trip, before anything is written or reserved.

A full service still admits a tenant below its fair share: the limit divided among the
tenants with outstanding tasks (the submitting one included), up to twice the limit. So
one tenant's backlog cannot lock another out; the tenant holding the backlog is refused
(429) until its tasks fall below its share, and everyone is refused (503) past twice the
limit, or when the one tenant with work is over the limit. Each refusal carries a
`Retry-After` of how long the backlog takes to fall back under the limit at the rate
measured.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

from agent_app.errors import ApiError
from agent_app.settings import Settings

Reason = Literal["capacity", "tenant_share"]


@dataclass(frozen=True)
class Limits:
    """The admission's two settings, as the script takes them."""

    max_latency_s: float
    min_tasks: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.admission_max_latency_s, settings.admission_min_tasks)


@dataclass(frozen=True)
class Load:
    """What the admission script found when it refused a task."""

    outstanding: int
    limit: float
    # The submitting tenant's outstanding tasks, and the tenants with any (it included).
    tenant_outstanding: int
    tenants: int
    # Tasks finishing per second.
    rate: float

    @classmethod
    def from_reply(cls, reply: list[str | int]) -> Load:
        """From the script's {4, outstanding, limit, mine, tenants, rate}."""
        return cls(int(reply[1]), float(reply[2]), int(reply[3]), int(reply[4]), float(reply[5]))

    @property
    def reason(self) -> Reason:
        """`tenant_share` when other tenants have work and the service is not past twice
        its limit: this tenant's own backlog is what refuses it. Else `capacity`."""
        if self.tenants > 1 and self.outstanding < 2 * self.limit:
            return "tenant_share"
        return "capacity"

    def room_in_s(self) -> float:
        """Seconds until the backlog is back under the limit at the measured rate: the
        whole service's, or the tenant's own (its tasks finish in proportion to their
        share of the outstanding ones); infinite when no task finished lately."""
        if self.rate <= 0:
            return math.inf
        if self.reason == "tenant_share":
            excess = self.tenant_outstanding - self.limit / self.tenants + 1
            return excess * self.outstanding / (self.tenant_outstanding * self.rate)
        return (self.outstanding - self.limit + 1) / self.rate

    def retry_after_s(self, max_latency_s: float) -> int:
        """`room_in_s` in whole seconds, between 1 s and the latency limit: the limit when
        nothing says how fast the backlog goes."""
        ceiling = max(1, math.ceil(max_latency_s))
        return max(1, math.ceil(min(self.room_in_s(), ceiling)))

    def refusal(self, tenant: str, max_latency_s: float) -> ApiError:
        """The answer: 429 for a tenant over its share, 503 for a service at capacity.
        It names the limit, and nothing of other tenants' work beyond that there is some."""
        retry = self.retry_after_s(max_latency_s)
        headers = {"Retry-After": str(retry)}
        if self.reason == "tenant_share":
            return ApiError(
                429,
                f"tenant {tenant!r} has {self.tenant_outstanding} tasks queued or running, "
                f"its fair share of a service at capacity; retry in {retry} s",
                extra={"limit": "tenant_share"},
                headers=headers,
            )
        return ApiError(
            503,
            f"service at capacity: its queued and running tasks would take more than "
            f"{max_latency_s:g} s to finish; retry in {retry} s",
            extra={"limit": "capacity"},
            headers=headers,
        )


# How long a replica answers a tenant's submissions with its last load refusal, at most:
# long enough to absorb a burst of them at hundreds a second, short enough that what
# decided it (the backlog, the tenants with work) has hardly moved.
RECALL_MAX_S = 0.25


class RecentRefusals:
    """This replica's load refusals of the last moment, per tenant. Until the backlog
    could have room for the tenant again (`Load.room_in_s`, at most `RECALL_MAX_S`), its
    next submissions get the same answer from `middleware.RefusalGate`, before FastAPI
    parses them and without a Redis round trip: a refusal costs a fraction of an
    admission, so shedding load does not take the CPU the admitted tasks need. A
    submission with an Idempotency-Key is not refused this way (it may replay a task
    admitted earlier), nor is any other tenant's."""

    def __init__(self) -> None:
        self._until: dict[str, tuple[float, ApiError, Reason]] = {}

    def __bool__(self) -> bool:
        return bool(self._until)

    def remember(self, tenant: str, load: Load, refusal: ApiError) -> None:
        recall = min(load.room_in_s(), RECALL_MAX_S)
        self._until[tenant] = (time.monotonic() + recall, refusal, load.reason)

    def recall(self, tenant: str) -> tuple[ApiError, Reason] | None:
        found = self._until.get(tenant)
        if found is None:
            return None
        until, refusal, reason = found
        if time.monotonic() >= until:
            del self._until[tenant]
            return None
        return refusal, reason
