"""The Grafana dashboards for the agent system, built with Grafana's own typed builders
(grafana-foundation-sdk, the Grafana 11.6 dashboard schema) and rendered to the JSON the
Grafana sidecar loads.

Every query names only series the stack's Prometheus scrapes (components/prometheus_rules.py):
the app's (agent_app/metrics.py), vLLM's and the DCGM exporter's. Nothing here reads
kube-state-metrics or KEDA's operator metrics, which the stack does not scrape; vLLM's
replica count is the number of vLLM pods reporting. tests/monitoring/test_dashboards.py
checks every metric name against what those exporters really export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from components.prometheus_rules import HOURS_PER_MONTH, QUEUE_JOB
from components.values import ArgsModel

# Grafana's provisioned Prometheus data source is picked per dashboard, not hard-coded.
DATASOURCE_VARIABLE = "datasource"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
RATE = "$__rate_interval"
TAGS = ["agent-platform"]
# The DCGM exporter runs as one DaemonSet per GPU pool, `app=dcgm-exporter-<pool>`
# (components/gpu_node_pool.py); Prometheus copies that label onto its series.
_POOL = '"pool", "$1", "app", "dcgm-exporter-(.+)"'


class DashboardsConfig(ArgsModel):
    """What the cost dashboard draws its reference lines at: figures the program knows."""

    expected_monthly_usd: float
    monthly_budget_usd: float


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


def _targets(queries: list[Query]) -> list[prometheus.Dataquery]:
    return [
        prometheus.Dataquery()
        .expr(q.expr)
        .legend_format(q.legend)
        .ref_id(chr(ord("A") + i))
        .datasource(DATASOURCE)
        for i, q in enumerate(queries)
    ]


def _graph(title: str, unit: str, queries: list[Query], description: str = "") -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
    )
    for target in _targets(queries):
        panel = panel.with_target(target)
    return panel


def _ratio(good: str, total: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return (
        f"sum{grouping} (rate({good}[{RATE}]))"
        f" / clamp_min(sum{grouping} (rate({total}[{RATE}])), 1e-9)"
    )


def _quantile(q: float, bucket: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({bucket}[{RATE}])))"


def _dashboard(uid: str, title: str, description: str) -> builders.Dashboard:
    return (
        builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .readonly()
        .with_variable(
            builders.DatasourceVariable(DATASOURCE_VARIABLE).label("Data source").type("prometheus")
        )
    )


def agent_service() -> builders.Dashboard:
    tasks = "agent_tasks_total"
    breaker = (
        statetimeline.Panel()
        .title("LLM circuit breakers")
        .description("Per model: closed, half-open or open (agent_app/breaker.py).")
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .mappings(
            [
                model.ValueMap(
                    options={
                        "0": model.ValueMappingResult(text="closed", color="green"),
                        "1": model.ValueMappingResult(text="half-open", color="orange"),
                        "2": model.ValueMappingResult(text="open", color="red"),
                    }
                )
            ]
        )
    )
    for target in _targets([Query("max by (model) (agent_llm_circuit_state)", "{{model}}")]):
        breaker = breaker.with_target(target)
    return (
        _dashboard("agent-service", "Agent service", "Tasks, queue, budgets, caches and cost.")
        .with_row(builders.Row("Tasks"))
        .with_panel(
            _graph(
                "Tasks per second",
                "reqps",
                [
                    Query(f"sum by (status) (rate({tasks}[{RATE}]))", "{{status}}"),
                    Query(f"sum(rate(agent_tasks_submitted_total[{RATE}]))", "submitted"),
                ],
            )
        )
        .with_panel(
            _graph(
                "Success ratio by track",
                "percentunit",
                [
                    Query(
                        _ratio(f'{tasks}{{status="completed"}}', tasks, "release_track"),
                        "{{release_track}}",
                    )
                ],
                "Completed tasks over all finished tasks, stable vs canary.",
            )
        )
        .with_panel(
            _graph(
                "Task duration p50 / p99 by track",
                "s",
                [
                    Query(
                        _quantile(q, "agent_task_duration_seconds_bucket", "release_track"),
                        f"p{int(q * 100)} {{{{release_track}}}}",
                    )
                    for q in (0.5, 0.99)
                ],
            )
        )
        .with_panel(
            _graph(
                "Queue depth and lag",
                "short",
                [
                    Query(f'sum(agent_queue_depth{{job="{QUEUE_JOB}"}})', "lag (not delivered)"),
                    Query(f'sum(agent_queue_pending{{job="{QUEUE_JOB}"}})', "pending (unacked)"),
                ],
                "The task stream's consumer-group lag (what KEDA scales workers on) and the "
                "entries delivered but not acknowledged.",
            )
        )
        .with_row(builders.Row("Budgets, caches and breakers"))
        .with_panel(
            _graph(
                "Budget used per tenant",
                "percentunit",
                [Query("max by (tenant) (agent_tenant_budget_used_ratio)", "{{tenant}}")],
                "Share of each tenant's budget for the current period already spent.",
            )
        )
        .with_panel(
            _graph(
                "Cache hit ratio",
                "percentunit",
                [
                    Query(
                        _ratio(
                            'agent_cache_requests_total{result="hit"}', "agent_cache_requests_total"
                        ),
                        "LLM response cache",
                    ),
                    Query(
                        _ratio(
                            'agent_result_cache_requests_total{result="hit"}',
                            "agent_result_cache_requests_total",
                        ),
                        "task result cache",
                    ),
                ],
            )
        )
        .with_panel(breaker)
        .with_panel(
            _graph(
                "Cost per task by model and track",
                "currencyUSD",
                [
                    Query(
                        f"sum by (model, release_track) (rate(agent_llm_cost_usd_total[{RATE}]))"
                        " / on (release_track) group_left"
                        f" clamp_min(sum by (release_track) (rate({tasks}[{RATE}])), 1e-9)",
                        "{{model}} {{release_track}}",
                    )
                ],
                "LLM spend per finished task.",
            )
        )
    )


def llm_serving() -> builders.Dashboard:
    return (
        _dashboard("llm-serving", "LLM serving", "vLLM: queue, KV cache, throughput, replicas.")
        .with_panel(
            _graph(
                "vLLM requests waiting and running",
                "short",
                [
                    Query("sum(vllm:num_requests_waiting)", "waiting"),
                    Query("sum(vllm:num_requests_running)", "running"),
                ],
            )
        )
        .with_panel(
            _graph(
                "KV-cache usage",
                "percentunit",
                [Query("max by (pod) (vllm:kv_cache_usage_perc)", "{{pod}}")],
            )
        )
        .with_panel(
            _graph(
                "Tokens per second",
                "short",
                [
                    Query(f"sum(rate(vllm:prompt_tokens_total[{RATE}]))", "prompt"),
                    Query(f"sum(rate(vllm:generation_tokens_total[{RATE}]))", "generation"),
                ],
            )
        )
        .with_panel(
            _graph(
                "Replicas",
                "short",
                [Query("count(count by (pod) (vllm:num_requests_running))", "vLLM pods")],
                "vLLM pods Prometheus scrapes (the stack runs no kube-state-metrics).",
            )
        )
        .with_panel(
            _graph(
                "Time to first token and request latency, p99",
                "s",
                [
                    Query(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(vllm:time_to_first_token_seconds_bucket[{RATE}])))",
                        "time to first token",
                    ),
                    Query(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(vllm:e2e_request_latency_seconds_bucket[{RATE}])))",
                        "end to end",
                    ),
                ],
            )
        )
    )


def gpus() -> builders.Dashboard:
    def per_pool(expr: str) -> str:
        return f"label_replace({expr}, {_POOL})"

    return (
        _dashboard("gpus", "GPUs", "DCGM exporter: utilisation, memory and power per node pool.")
        .with_panel(
            _graph(
                "GPU utilisation per pool",
                "percent",
                [Query(per_pool("avg by (app) (DCGM_FI_DEV_GPU_UTIL)"), "{{pool}}")],
            )
        )
        .with_panel(
            _graph(
                "GPU memory used per pool",
                "percentunit",
                [
                    Query(
                        per_pool(
                            "sum by (app) (DCGM_FI_DEV_FB_USED) / clamp_min(sum by (app) "
                            "(DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE), 1)"
                        ),
                        "{{pool}}",
                    )
                ],
            )
        )
        .with_panel(
            _graph(
                "Power per pool",
                "watt",
                [Query(per_pool("sum by (app) (DCGM_FI_DEV_POWER_USAGE)"), "{{pool}}")],
            )
        )
    )


def cost(config: DashboardsConfig) -> builders.Dashboard:
    spend_rate = f"sum(rate(agent_llm_cost_usd_total[{RATE}]))"
    thresholds = (
        builders.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps(
            [
                model.Threshold(value=None, color="green"),
                model.Threshold(value=config.expected_monthly_usd, color="orange"),
                model.Threshold(value=config.monthly_budget_usd, color="red"),
            ]
        )
    )
    monthly = (
        _graph(
            "Monthly spend: run rate vs expected",
            "currencyUSD",
            [
                Query(f"{spend_rate} * {SECONDS_PER_MONTH}", "actual (LLM spend, monthly rate)"),
                Query(f"vector({config.expected_monthly_usd})", "expected (stack estimate)"),
                Query(f"vector({config.monthly_budget_usd})", "budget"),
            ],
            "Actual: the app's LLM spend at the current rate over a month. Expected: the "
            "stack's estimated monthly cost (`estimatedMonthlyCost.expectedUsd`), and the "
            "budget; both also drawn as threshold lines.",
        )
        .thresholds(thresholds)
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
        )
    )
    spent = (
        stat.Panel()
        .title("Spent in the time range")
        .unit("currencyUSD")
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
    )
    for target in _targets([Query("sum(increase(agent_llm_cost_usd_total[$__range]))", "spent")]):
        spent = spent.with_target(target)
    return (
        _dashboard("agent-cost", "Cost", "Expected vs actual spend.")
        .with_panel(monthly)
        .with_panel(spent)
        .with_panel(
            _graph(
                "Spend by model",
                "currencyUSD",
                [
                    Query(
                        f"sum by (model) (rate(agent_llm_cost_usd_total[{RATE}])) * 3600",
                        "{{model}} per hour",
                    )
                ],
            )
        )
    )


def render(dashboard: builders.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, panel ids numbered in order."""
    built = dashboard.build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    rendered: dict[str, Any] = json.loads(json.dumps(built, cls=JSONEncoder, sort_keys=True))
    return rendered


def dashboards(config: DashboardsConfig) -> dict[str, dict[str, Any]]:
    """Every dashboard, by its uid."""
    built = [agent_service(), llm_serving(), gpus(), cost(config)]
    return {d["uid"]: d for d in map(render, built)}
