"""The Grafana dashboards: the PromQL name extractor, the schema, the exporters' names."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.dashboards import SECONDS_PER_MONTH, DashboardsConfig, dashboards
from components.gpu_node_pool import DCGM_EXPORTER_IMAGE
from components.llm_service import VLLM_IMAGE
from monitoring.dashboard_checks import (
    EXPORTERS,
    documented_exporter_names,
    names_read,
    queries,
    schema_problems,
    unknown_names,
)
from monitoring.promql_names import PromQLSyntaxError, metric_names

PROMTOOL = Path(__file__).resolve().parents[2] / "scripts" / "promtool"
# Grafana's interval variables, as Grafana substitutes them before Prometheus sees a query.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "6h"}
CONFIG = DashboardsConfig(expected_monthly_usd=1234.5, monthly_budget_usd=1500)


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    return dashboards(CONFIG)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (status) (rate(agent_tasks_total{status="failed"}[5m]))', {"agent_tasks_total"}),
        # Grouping lists, modifiers and label names in matchers are not metrics.
        (
            "sum by (model, release_track) (rate(a_total[$__rate_interval]))"
            " / on (release_track) group_left (model) sum without (pod) (b_total)",
            {"a_total", "b_total"},
        ),
        # Strings (label_replace's arguments) and durations, offsets and subqueries.
        (
            'label_replace(avg by (app) (x), "pool", "$1", "app", "dcgm-(.+)")'
            " + max_over_time(y[1h:5m] offset 1d) * 2.5e3 > bool 1",
            {"x", "y"},
        ),
        # A metric name that looks like a function is still read when not called.
        (
            "histogram_quantile(0.99, sum by (le) (rate(vllm:e2e_seconds_bucket[5m])))",
            {"vllm:e2e_seconds_bucket"},
        ),
        ('{__name__="hidden"} or vector(1)', set()),
        (
            "count(count by (pod) (vllm:num_requests_running)) and on() z",
            {"vllm:num_requests_running", "z"},
        ),
    ],
)
def test_metric_names_are_extracted(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize("expr", ["sum(rate(x[5m])", 'x{a="b"', "x)", "x ; y"])
def test_malformed_promql_is_refused(expr: str) -> None:
    with pytest.raises(PromQLSyntaxError):
        metric_names(expr)


def test_there_is_a_dashboard_for_each_area(rendered: dict[str, dict[str, Any]]) -> None:
    titles = {
        uid: {panel["title"] for panel in d["panels"] if panel["type"] != "row"}
        for uid, d in rendered.items()
    }
    assert set(titles) == {"agent-service", "llm-serving", "gpus", "agent-cost"}
    assert {
        "Tasks per second",
        "Success ratio by track",
        "Task duration p50 / p99 by track",
        "Queue depth and lag",
        "Budget used per tenant",
        "Cache hit ratio",
        "LLM circuit breakers",
        "Cost per task by model and track",
    } <= titles["agent-service"]
    assert {
        "vLLM requests waiting and running",
        "KV-cache usage",
        "Tokens per second",
        "Replicas",
    } <= titles["llm-serving"]
    assert titles["gpus"] == {
        "GPU utilisation per pool",
        "GPU memory used per pool",
        "Power per pool",
    }
    for uid, dashboard in rendered.items():
        assert dashboard["uid"] == uid
        assert all(expr for _, expr in queries(dashboard))


@pytest.mark.parametrize("uid", ["agent-service", "llm-serving", "gpus", "agent-cost"])
def test_dashboards_follow_the_sdk_schema(rendered: dict[str, dict[str, Any]], uid: str) -> None:
    assert schema_problems(rendered[uid]) == []


def test_the_schema_check_catches_what_grafana_would_not_read(
    rendered: dict[str, dict[str, Any]],
) -> None:
    unknown_field = copy.deepcopy(rendered["gpus"])
    unknown_field["panels"][0]["colour"] = "red"
    wrong_type = copy.deepcopy(rendered["gpus"])
    wrong_type["panels"][0]["type"] = "graph-of-my-own"
    off_grid = copy.deepcopy(rendered["gpus"])
    off_grid["panels"][0]["gridPos"]["x"] = 20
    wrong_scalar = copy.deepcopy(rendered["gpus"])
    wrong_scalar["panels"][0]["gridPos"]["h"] = "tall"
    wrong_enum = copy.deepcopy(rendered["agent-cost"])
    wrong_enum["panels"][0]["fieldConfig"]["defaults"]["thresholds"]["mode"] = "relative-ish"
    assert any("round-trip" in p for p in schema_problems(unknown_field))
    assert any("unknown panel type" in p for p in schema_problems(wrong_type))
    assert any("grid" in p for p in schema_problems(off_grid))
    assert schema_problems(wrong_scalar) == ["wrong type: .panels[0].grid_pos.h: 'tall'"]
    assert schema_problems(wrong_enum) == [
        "wrong type: .panels[0].field_config.defaults.thresholds.mode: 'relative-ish'"
    ]


def test_cost_dashboard_draws_the_expected_spend_and_the_budget(
    rendered: dict[str, dict[str, Any]],
) -> None:
    (monthly, *_) = rendered["agent-cost"]["panels"]
    steps = monthly["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 1234.5, 1500]
    assert monthly["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] == {"mode": "line"}
    exprs = [t["expr"] for t in monthly["targets"]]
    assert exprs == [
        f"sum(rate(agent_llm_cost_usd_total[$__rate_interval])) * {SECONDS_PER_MONTH}",
        "vector(1234.5)",
        "vector(1500.0)",
    ]


def test_exporter_names_describe_the_pinned_images() -> None:
    # A bump of either image must re-check the documented names.
    assert EXPORTERS["vllm"]["image"] == VLLM_IMAGE
    assert EXPORTERS["dcgm"]["image"] == DCGM_EXPORTER_IMAGE


def test_vllm_and_dcgm_panels_read_only_documented_names(
    rendered: dict[str, dict[str, Any]],
) -> None:
    read = names_read(rendered.values())
    exporters = {n: p for n, p in read.items() if n.startswith(("vllm:", "DCGM_"))}
    assert exporters, "the LLM and GPU dashboards read vLLM and DCGM series"
    assert unknown_names(exporters, documented_exporter_names()) == {}
    # And the check does fail on a name nobody exports (vLLM's pre-V1 spelling).
    stale = {"vllm:gpu_cache_usage_perc": {"LLM serving / KV-cache usage"}}
    assert unknown_names(stale, documented_exporter_names()) == stale


def test_every_query_parses_as_promql(rendered: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """Prometheus' own parser (promtool, the deployed version) reads every query, each
    written as a recording rule."""
    rules: list[dict[str, str]] = []
    for dashboard in rendered.values():
        for _, expr in queries(dashboard):
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            rules.append({"record": f"dashboard:query{len(rules)}", "expr": expr})
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
