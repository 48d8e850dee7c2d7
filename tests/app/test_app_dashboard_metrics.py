"""Every metric name the Grafana dashboards read is one something really exports: the
live app (API, its backlog endpoint, a worker, after a task ran through devllm) or the
documented names of the exporters the stack pins (vLLM, DCGM)."""

from __future__ import annotations

import httpx
from monitoring.dashboard_checks import (
    documented_exporter_names,
    exposed_names,
    names_read,
    unknown_names,
)

from app.appkit import Client, Service
from components.dashboards import DashboardsConfig, dashboards


def _scrape(url: str, path: str) -> str:
    response = httpx.get(f"{url}{path}", timeout=5)
    response.raise_for_status()
    return response.text


def test_dashboards_read_only_metrics_that_are_exported(
    api: Service, worker: Service, acme: Client
) -> None:
    # A task through the LLM (devllm) and the tools, so the labelled series exist too.
    assert acme.submit("compute 8 - 3", wait=60).json()["status"] == "completed"
    live: set[str] = set()
    for url, path in (
        (api.metrics_url, "/metrics"),
        (api.metrics_url, "/metrics/queue"),
        (worker.metrics_url, "/metrics"),
    ):
        live |= exposed_names(_scrape(url, path))
    # What the app's panels need is there in the live scrape, as exported.
    assert {
        "agent_tasks_total",
        "agent_task_duration_seconds_bucket",
        "agent_llm_cost_usd_total",
        "agent_queue_depth",
    } <= live
    read = names_read(
        dashboards(DashboardsConfig(expected_monthly_usd=1, monthly_budget_usd=2)).values()
    )
    assert unknown_names(read, live | documented_exporter_names()) == {}
    # The app's own names come from the app, not from an exporter's list.
    assert unknown_names({n: p for n, p in read.items() if n.startswith("agent_")}, live) == {}
    # And a misspelt name (a counter without its _total) is reported with its panel.
    typo = {"agent_tasks": {"Agent service / Tasks per second"}}
    assert unknown_names(typo, live | documented_exporter_names()) == typo
