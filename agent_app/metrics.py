"""Prometheus metrics. Every series carries the release version and track."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from agent_app.releases import Release

RELEASE_LABELS = ("release_version", "release_track")
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
# The boundaries the OpenTelemetry GenAI conventions advise: 0.01 s doubling to 81.92 s.
_GENAI_DURATION_BUCKETS = tuple(0.01 * 2**i for i in range(14))
_TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    """One registry per process, so tests and the two server roles never share series."""

    def __init__(self, release: Release) -> None:
        self.registry = CollectorRegistry()
        self._release = {"release_version": release.version, "release_track": release.track}
        r = self.registry

        def labels(*names: str) -> Sequence[str]:
            return (*names, *RELEASE_LABELS)

        self.tasks = Counter(
            "agent_tasks",
            "Tasks finished, by final status and experiment variant.",
            labels("status", "variant"),
            registry=r,
        )
        self.task_duration = Histogram(
            "agent_task_duration_seconds",
            "Wall time from a worker taking a task to its final result.",
            labels("status"),
            buckets=_TASK_BUCKETS,
            registry=r,
        )
        self.tasks_submitted = Counter(
            "agent_tasks_submitted",
            "Tasks accepted by the API, by experiment variant.",
            labels("variant"),
            registry=r,
        )
        self.tool_calls = Counter(
            "agent_tool_calls",
            "Tool invocations by tool and outcome.",
            labels("tool", "outcome"),
            registry=r,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per LLM call (OpenTelemetry gen_ai.client.token.usage).",
            labels("gen_ai_operation_name", "gen_ai_request_model", "gen_ai_token_type"),
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.operation_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "LLM call duration (OpenTelemetry gen_ai.client.operation.duration).",
            labels("gen_ai_operation_name", "gen_ai_request_model", "error_type"),
            buckets=_GENAI_DURATION_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "agent_llm_retries", "LLM call attempts after the first.", labels("model"), registry=r
        )
        self.cost = Counter(
            "agent_llm_cost_usd", "USD spent on LLM calls, by model.", labels("model"), registry=r
        )
        self.cache = Counter(
            "agent_cache_requests", "LLM response cache lookups.", labels("result"), registry=r
        )
        self.result_cache = Counter(
            "agent_result_cache_requests",
            "Task result cache lookups on submission (tasks without a session only).",
            labels("result"),
            registry=r,
        )
        self.breaker_state = Gauge(
            "agent_llm_circuit_state",
            "Circuit breaker state per model: 0 closed, 1 half-open, 2 open.",
            labels("model"),
            registry=r,
        )
        self.inflight_requests = Gauge(
            "agent_http_inflight_requests", "HTTP requests being served.", labels(), registry=r
        )
        self.inflight_llm = Gauge(
            "agent_llm_inflight_requests", "LLM calls under way.", labels("model"), registry=r
        )
        self.inflight_tasks = Gauge(
            "agent_worker_inflight_tasks", "Tasks a worker is running.", labels(), registry=r
        )
        self.dead_letters = Counter(
            "agent_dead_letters", "Tasks moved to the dead-letter stream.", labels(), registry=r
        )
        self.reclaimed = Counter(
            "agent_reclaimed_entries",
            "Stream entries reclaimed from idle consumers.",
            labels(),
            registry=r,
        )
        self.redactions = Counter(
            "agent_redactions",
            "Credentials redacted, by kind and where they were found.",
            labels("kind", "where"),
            registry=r,
        )
        self.injection_flags = Counter(
            "agent_injection_flags",
            "Prompt-injection heuristics that fired, by reason and action taken.",
            labels("reason", "action"),
            registry=r,
        )
        self.budget_actions = Counter(
            "agent_budget_actions",
            "Cost-limiting actions applied to tenants near or over budget.",
            labels("action"),
            registry=r,
        )
        self.admission_refusals = Counter(
            "agent_admission_refusals",
            "Tasks refused at once for the service's load, by the limit met: capacity (503) "
            "or tenant_share (429).",
            labels("reason"),
            registry=r,
        )
        self.budget_used = Gauge(
            "agent_tenant_budget_used_ratio",
            "Share of the tenant's budget for the current period already spent.",
            labels("tenant"),
            registry=r,
        )
        self.llm_anomalies = Counter(
            "agent_llm_response_anomalies",
            "LLM answers the agent did not take as they came: no_choices, empty_message, "
            "missing_usage (tokens estimated), oversized (cut), too_many_tool_calls, "
            "unknown_tool.",
            labels("model", "kind"),
            registry=r,
        )
        self.model_selections = Counter(
            "agent_model_selections", "Models chosen for tasks.", labels("model"), registry=r
        )

    def rel(self, **labels: str) -> dict[str, str]:
        return {**labels, **self._release}

    def render(self) -> bytes:
        return generate_latest(self.registry)


class QueueMetrics:
    """The task stream's backlog. It is a fact about Redis, not about a process: exported
    by every replica, as it once was, `sum()` over scrape targets counted it once per pod.
    So it has a registry of its own, rendered only at the API's `/metrics/queue`, which
    Prometheus scrapes through one Service as one target (see components/agent_service.py),
    and no release labels (whichever replica answers, the value is the same).

    `agent_queue_depth` is what KEDA's redis-streams `lagCount` reads: the group's lag,
    entries not yet delivered to any worker. `agent_queue_pending` is what its
    `pendingEntriesCount` reads: entries delivered and not yet acknowledged (running, or
    left by a worker that died, until they are reclaimed)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.depth = Gauge(
            "agent_queue_depth",
            "Task stream entries not yet delivered to a worker (the consumer group's lag).",
            ("stream", "group"),
            registry=self.registry,
        )
        self.pending = Gauge(
            "agent_queue_pending",
            "Task stream entries delivered to a worker and not yet acknowledged.",
            ("stream", "group"),
            registry=self.registry,
        )

    def render(self, stream: str, group: str, lag: int, pending: int) -> bytes:
        self.depth.labels(stream=stream, group=group).set(lag)
        self.pending.labels(stream=stream, group=group).set(pending)
        return generate_latest(self.registry)
