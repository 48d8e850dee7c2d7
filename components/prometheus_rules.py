"""Prometheus scrape config and alert rules for the agent system, as data.

Generated from Python so the thresholds follow the stack config (the budget alert
burns against the stack's own budget); `promtool` checks the rendered YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

HOURS_PER_MONTH = 730


@dataclass(frozen=True)
class AlertThresholds:
    monthly_budget_usd: float
    error_ratio: float = 0.05
    p99_latency_seconds: float = 30.0
    queue_depth: int = 100
    canary_error_ratio_factor: float = 2.0
    gpu_idle_utilisation_pct: float = 10.0
    gpu_saturated_utilisation_pct: float = 95.0
    # vLLM's alerts, when it serves: its replica ceiling (the autoscaler's max, or the
    # fixed count), the queue per replica that counts as backed up, and a full KV cache.
    llm_max_replicas: int | None = None
    llm_waiting_per_replica: int = 4
    llm_kv_cache_saturated: float = 0.95


QUEUE_JOB = "agent-queue"

# The pod label Flagger rewrites on its primary copy (components.kube.WORKLOAD_LABEL), as
# service discovery spells it; in order, so that the primary's rule has the last word.
WORKLOAD_META_LABEL = "__meta_kubernetes_pod_label_agent_platform_io_workload"
RELEASE_TRACK_BY_WORKLOAD = ((".+", "canary"), (".+-primary", "stable"))


def scrape_config(
    namespace: str,
    scrape_interval: str,
    gpu_namespace: str | None,
    queue_target: str | None = None,
    queue_path: str = "/metrics/queue",
) -> dict[str, Any]:
    """Kubernetes pod discovery, keeping pods that opt in with prometheus.io annotations;
    and, at `queue_target` (host:port of a Service), the task stream's backlog as one
    target, so that it is one series however many replicas could report it."""
    namespaces = [namespace] + ([gpu_namespace] if gpu_namespace else [])
    queue_jobs = (
        [
            {
                "job_name": QUEUE_JOB,
                "metrics_path": queue_path,
                "static_configs": [{"targets": [queue_target], "labels": {"namespace": namespace}}],
            }
        ]
        if queue_target
        else []
    )
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": ["/etc/prometheus/rules/*.yml"],
        "scrape_configs": [
            {
                "job_name": "kubernetes-pods",
                "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": namespaces}}],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                        "action": "keep",
                        "regex": "true",
                    },
                    {
                        "source_labels": [
                            "__address__",
                            "__meta_kubernetes_pod_annotation_prometheus_io_port",
                        ],
                        "action": "replace",
                        "regex": "([^:]+)(?::\\d+)?;(\\d+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                        "action": "replace",
                        "regex": "(.+)",
                        "target_label": "__metrics_path__",
                    },
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {
                        "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
                        "target_label": "app",
                    },
                    # Under Flagger one pod template runs as both tracks: the label it
                    # rewrites tells them apart, and overrides the app's own
                    # `release_track` (components/progressive_delivery.py).
                    *(
                        {
                            "source_labels": [WORKLOAD_META_LABEL],
                            "regex": regex,
                            "target_label": "release_track",
                            "replacement": track,
                        }
                        for regex, track in RELEASE_TRACK_BY_WORKLOAD
                    ),
                ],
            },
            *queue_jobs,
        ],
    }


def _error_ratio(selector: str) -> str:
    return (
        f'sum(rate(agent_tasks_total{{status=~"failed|dead_lettered"{selector}}}[5m]))'
        f" / clamp_min(sum(rate(agent_tasks_total{{{selector.lstrip(',')}}}[5m])), 1e-9)"
    )


def alert_rules(t: AlertThresholds) -> dict[str, Any]:
    hourly_budget = t.monthly_budget_usd / HOURS_PER_MONTH
    return {
        "groups": [
            {
                "name": "agent-platform.recording",
                "rules": [
                    {"record": "agent:task_error_ratio:rate5m", "expr": _error_ratio("")},
                    {
                        "record": "agent:task_error_ratio_by_release_track:rate5m",
                        "expr": (
                            'sum by (release_track) (rate(agent_tasks_total{status=~"failed|dead_lettered"}[5m]))'
                            " / clamp_min(sum by (release_track) (rate(agent_tasks_total[5m])), 1e-9)"
                        ),
                    },
                    {
                        # Per track, for the canary analysis (components/progressive_delivery.py)
                        # and the release dashboards.
                        "record": "agent:task_duration_seconds:p99_by_release_track:rate5m",
                        "expr": (
                            "histogram_quantile(0.99, sum by (release_track, le)"
                            " (rate(agent_task_duration_seconds_bucket[5m])))"
                        ),
                    },
                    {
                        "record": "agent:llm_cost_usd_per_task_by_release_track:rate5m",
                        "expr": (
                            "sum by (release_track) (rate(agent_llm_cost_usd_total[5m]))"
                            " / sum by (release_track) (rate(agent_tasks_total[5m]))"
                        ),
                    },
                    {
                        "record": "agent:llm_cost_usd:rate1h",
                        "expr": "sum(rate(agent_llm_cost_usd_total[1h])) * 3600",
                    },
                ],
            },
            {
                "name": "agent-platform.alerts",
                "rules": [
                    {
                        "alert": "AgentTaskErrorRatioHigh",
                        "expr": f"agent:task_error_ratio:rate5m > {t.error_ratio}",
                        "for": "10m",
                        "labels": {"severity": "page"},
                        "annotations": {
                            "summary": "More than {{ $value | humanizePercentage }} of agent tasks fail",
                            "runbook": "Check the LLM breaker state and the dead-letter stream.",
                        },
                    },
                    {
                        "alert": "AgentTaskLatencyP99High",
                        "expr": (
                            "histogram_quantile(0.99, sum by (le) "
                            f"(rate(agent_task_duration_seconds_bucket[5m]))) > {t.p99_latency_seconds}"
                        ),
                        "for": "10m",
                        "labels": {"severity": "ticket"},
                        "annotations": {"summary": "Agent task p99 latency is {{ $value }}s"},
                    },
                    {
                        # One series per stream and group (scraped once, see
                        # scrape_config), so the sum is the backlog, not a multiple of it.
                        # Depth is the lag: tasks no worker has taken yet, as KEDA's
                        # lagCount reads it; running tasks are agent_queue_pending.
                        "alert": "AgentQueueBacklog",
                        "expr": (f"sum by (stream, group) (agent_queue_depth) > {t.queue_depth}"),
                        "for": "15m",
                        "labels": {"severity": "page"},
                        "annotations": {
                            "summary": "{{ $value }} tasks wait undelivered in {{ $labels.stream }}",
                            "runbook": "Autoscaling is at its maximum or workers are failing.",
                        },
                    },
                    {
                        # Autoscaling reads Redis itself, but with no backlog series the
                        # backlog alert above cannot fire: say so rather than stay quiet.
                        "alert": "AgentQueueBacklogUnknown",
                        "expr": "absent(agent_queue_depth)",
                        "for": "10m",
                        "labels": {"severity": "ticket"},
                        "annotations": {
                            "summary": "The task stream's backlog is not scraped",
                            "runbook": (
                                f"Check the {QUEUE_JOB} scrape job, the agent-metrics Service "
                                "and the API pods' metrics port."
                            ),
                        },
                    },
                    {
                        "alert": "LlmBudgetBurnHigh",
                        "expr": f"agent:llm_cost_usd:rate1h > {hourly_budget:.6f}",
                        "for": "30m",
                        "labels": {"severity": "ticket"},
                        "annotations": {
                            "summary": (
                                'LLM spend of ${{ $value | printf "%.2f" }}/h would exceed the '
                                f"monthly budget of ${t.monthly_budget_usd:.0f}"
                            )
                        },
                    },
                    {
                        "alert": "CanaryErrorRatioAboveStable",
                        "expr": (
                            'agent:task_error_ratio_by_release_track:rate5m{release_track="canary"} > on() '
                            f"({t.canary_error_ratio_factor} * "
                            'agent:task_error_ratio_by_release_track:rate5m{release_track="stable"}) '
                            'and on() agent:task_error_ratio_by_release_track:rate5m{release_track="canary"} > 0.01'
                        ),
                        "for": "10m",
                        "labels": {"severity": "page"},
                        "annotations": {
                            "summary": "The canary fails more than the stable release: roll it back",
                            "runbook": "pulumi config set --path canary.weight 0, then pulumi up (see README).",
                        },
                    },
                    {
                        "alert": "GpuIdle",
                        "expr": f"avg(DCGM_FI_DEV_GPU_UTIL) < {t.gpu_idle_utilisation_pct}",
                        "for": "1h",
                        "labels": {"severity": "ticket"},
                        "annotations": {
                            "summary": "GPUs average {{ $value }}% utilisation: scale the pool down"
                        },
                    },
                    {
                        "alert": "GpuSaturated",
                        "expr": f"avg(DCGM_FI_DEV_GPU_UTIL) > {t.gpu_saturated_utilisation_pct}",
                        "for": "15m",
                        "labels": {"severity": "ticket"},
                        "annotations": {
                            "summary": "GPUs average {{ $value }}% utilisation: add capacity"
                        },
                    },
                ],
            },
            *([_llm_serving_rules(t, t.llm_max_replicas)] if t.llm_max_replicas else []),
        ]
    }


def _llm_serving_rules(t: AlertThresholds, max_replicas: int) -> dict[str, Any]:
    """vLLM's own signals: a queue that keeps growing when no replica can be added, and
    a KV cache so full that vLLM preempts and recomputes requests."""
    waiting = 'sum(vllm:num_requests_waiting{app="llm"})'
    serving = 'count(up{app="llm"} == 1)'
    return {
        "name": "agent-platform.llm-serving",
        "rules": [
            {
                "alert": "LlmQueueGrowingAtMaxReplicas",
                "expr": (
                    f"{waiting} > {t.llm_waiting_per_replica * max_replicas}"
                    f" and deriv({waiting}[10m:1m]) > 0"
                    f" and {serving} >= {max_replicas}"
                ),
                "for": "10m",
                "labels": {"severity": "page"},
                "annotations": {
                    "summary": (
                        f"vLLM's queue grows at its ceiling of {max_replicas} replicas"
                        " ({{ $value }} waiting): raise llm.autoscaling.maxReplicas and the GPU"
                        " pool, or shed load"
                    )
                },
            },
            {
                "alert": "LlmKvCacheSaturated",
                "expr": (
                    f'max by (pod) (vllm:kv_cache_usage_perc{{app="llm"}}) > {t.llm_kv_cache_saturated}'
                ),
                "for": "10m",
                "labels": {"severity": "ticket"},
                "annotations": {
                    "summary": (
                        "vLLM's KV cache on {{ $labels.pod }} is {{ $value | humanizePercentage }}"
                        " full: requests are preempted; add replicas or lower llm.maxModelLen"
                    )
                },
            },
        ],
    }


# libyaml's emitter writes what the pure-Python SafeDumper writes, ten times faster: the
# Python one was a tenth of the local stack's evaluation.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_DUMPER, sort_keys=False, width=120)
