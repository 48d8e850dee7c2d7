"""Grafana dashboards as ConfigMaps for the Grafana sidecar."""

from __future__ import annotations

import json

from component_mocks import evaluate, provider

from components.dashboards import DashboardsConfig, dashboards
from components.grafana_dashboards import GrafanaDashboards, GrafanaDashboardsArgs

COMPONENT = "agent-platform:monitoring:GrafanaDashboards"
CONFIG = DashboardsConfig(expected_monthly_usd=900, monthly_budget_usd=1500)


def test_one_sidecar_config_map_per_dashboard() -> None:
    def program() -> GrafanaDashboards:
        return GrafanaDashboards(
            "dashboards",
            GrafanaDashboardsArgs(dashboards=CONFIG, namespace="agents", provider=provider()),
        )

    component, graph = evaluate(program)
    children = graph.children(graph.component(COMPONENT))
    assert sorted(c.inputs["metadata"]["name"] for c in children) == [
        "grafana-dashboard-agent-cost",
        "grafana-dashboard-agent-service",
        "grafana-dashboard-gpus",
        "grafana-dashboard-llm-serving",
    ]
    expected = dashboards(CONFIG)
    for child in children:
        assert child.type == "kubernetes:core/v1:ConfigMap"
        metadata = child.inputs["metadata"]
        assert metadata["namespace"] == "agents"
        # The label and value the Grafana sidecar loads dashboards by.
        assert metadata["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = child.inputs["data"].items()
        uid = key.removesuffix(".json")
        assert metadata["name"] == f"grafana-dashboard-{uid}"
        assert text == component.rendered[uid]
        assert json.loads(text) == expected[uid]
    assert graph.outputs_of(graph.component(COMPONENT)) == {"dashboards": sorted(expected)}
