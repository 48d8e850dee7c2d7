"""Monitoring: Prometheus with discovery RBAC, its generated config and rules, storage."""

from __future__ import annotations

import pytest
import yaml
from component_mocks import evaluate, priced_both_ways, provider

from components.monitoring import Monitoring, MonitoringArgs, MonitoringConfig
from components.prometheus_rules import AlertThresholds

MONITORING = "agent-platform:monitoring:Monitoring"


def test_prometheus_reads_its_generated_config_and_rules() -> None:
    config = MonitoringConfig(retention="7d", storage_gi=50)

    def program() -> Monitoring:
        return Monitoring(
            "monitoring",
            MonitoringArgs(
                config=config,
                namespace="agents",
                thresholds=AlertThresholds(monthly_budget_usd=1500),
                provider=provider(),
            ),
        )

    monitoring, graph = evaluate(program)
    component = graph.component(MONITORING)
    assert [t for t, _ in graph.kinds(component)] == [
        "kubernetes:apps/v1:Deployment",
        "kubernetes:core/v1:ConfigMap",
        "kubernetes:core/v1:ConfigMap",
        "kubernetes:core/v1:PersistentVolumeClaim",
        "kubernetes:core/v1:Service",
        "kubernetes:core/v1:ServiceAccount",
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
    ]
    config_map = graph.named("kubernetes:core/v1:ConfigMap", "monitoring-config").inputs
    assert config_map["data"]["prometheus.yml"] == monitoring.prometheus_config
    assert "scrape_configs" in yaml.safe_load(monitoring.prometheus_config)
    binding = graph.named(
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding", "monitoring-discovery"
    ).inputs
    assert binding["roleRef"]["name"] == "agents-prometheus-discovery"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus", "namespace": "agents"}
    ]
    deployment = graph.named("kubernetes:apps/v1:Deployment", "monitoring-prometheus").inputs
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--storage.tsdb.retention.time=7d" in container["args"]
    claim = graph.named("kubernetes:core/v1:PersistentVolumeClaim", "monitoring-data").inputs
    assert claim["spec"]["resources"]["requests"] == {"storage": "50Gi"}
    assert graph.outputs_of(component) == {
        "prometheusUrl": "http://prometheus.agents.svc.cluster.local:9090"
    }


@pytest.mark.parametrize(("key", "value"), [("retention", "15 days"), ("scrape_interval", "30")])
def test_durations_are_prometheus_durations(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"{key}\n  String should match pattern"):
        MonitoringConfig.model_validate({key: value})


def test_the_bill_is_the_data_volume() -> None:
    def program() -> Monitoring:
        return Monitoring(
            "monitoring",
            MonitoringArgs(
                config=MonitoringConfig(storage_gi=50),
                namespace="agents",
                thresholds=AlertThresholds(monthly_budget_usd=1500),
                provider=provider(),
            ),
        )

    monitoring, graph = evaluate(program)
    declared, registered = priced_both_ways(monitoring.bill, graph)
    assert declared == registered
    assert "Volume 'prometheus-data' (50 GiB gp3)" in [i["item"] for i in declared["items"]]
