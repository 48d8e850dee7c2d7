"""Prometheus for the agent system: service discovery RBAC, generated config and alert
rules, and persistent storage."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import k8s_objects
from components.kube import (
    child_options,
    labels,
    restricted_container_security,
    restricted_pod_security,
    selector,
)
from components.prometheus_rules import AlertThresholds, alert_rules, scrape_config, to_yaml
from stacks.config import MonitoringConfig

PROMETHEUS_PORT = 9090
PROMETHEUS_UID = 65534


@dataclass(frozen=True)
class MonitoringArgs:
    config: MonitoringConfig
    namespace: str
    thresholds: AlertThresholds
    provider: k8s.Provider
    gpu_namespace: str | None = None


class Monitoring(pulumi.ComponentResource):
    prometheus_url: pulumi.Output[str]
    prometheus_config: str
    alert_rules: str

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:monitoring:Monitoring", name, None, opts)
        opts_k8s = child_options(self, opts, provider=args.provider)
        app = "prometheus"
        app_labels = labels(app, "monitoring")
        ns = args.namespace

        self.prometheus_config = to_yaml(
            scrape_config(ns, args.config.scrape_interval, args.gpu_namespace)
        )
        self.alert_rules = to_yaml(alert_rules(args.thresholds))

        account = k8s_objects.ServiceAccount(
            f"{name}-sa",
            metadata={"name": app, "namespace": ns, "labels": app_labels},
            opts=opts_k8s,
        )
        role = k8s_objects.ClusterRole(
            f"{name}-discovery",
            metadata={"name": f"{ns}-prometheus-discovery", "labels": app_labels},
            rules=[
                {
                    "apiGroups": [""],
                    "resources": ["pods", "services", "endpoints", "nodes"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch"],
                },
                {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
            ],
            opts=opts_k8s,
        )
        k8s_objects.ClusterRoleBinding(
            f"{name}-discovery",
            metadata={"name": f"{ns}-prometheus-discovery", "labels": app_labels},
            roleRef={
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role.metadata["name"],
            },
            subjects=[
                {"kind": "ServiceAccount", "name": account.metadata["name"], "namespace": ns}
            ],
            opts=opts_k8s,
        )
        config_map = k8s_objects.ConfigMap(
            f"{name}-config",
            metadata={"name": "prometheus-config", "namespace": ns, "labels": app_labels},
            data={"prometheus.yml": self.prometheus_config},
            opts=opts_k8s,
        )
        rules_map = k8s_objects.ConfigMap(
            f"{name}-rules",
            metadata={"name": "prometheus-rules", "namespace": ns, "labels": app_labels},
            data={"agent-platform.yml": self.alert_rules},
            opts=opts_k8s,
        )
        storage = k8s_objects.PersistentVolumeClaim(
            f"{name}-data",
            metadata={"name": "prometheus-data", "namespace": ns, "labels": app_labels},
            spec={
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{args.config.storage_gi}Gi"}},
            },
            opts=opts_k8s,
        )
        digest = hashlib.sha256((self.prometheus_config + self.alert_rules).encode()).hexdigest()[
            :16
        ]
        k8s_objects.Deployment(
            f"{name}-prometheus",
            metadata={"name": app, "namespace": ns, "labels": app_labels},
            spec={
                "replicas": 1,
                # One writer to the volume at a time.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector(app)},
                "template": {
                    "metadata": {
                        "labels": app_labels,
                        "annotations": {"agent-platform.io/config-digest": digest},
                    },
                    "spec": {
                        "serviceAccountName": account.metadata["name"],
                        "securityContext": restricted_pod_security(PROMETHEUS_UID),
                        "containers": [
                            {
                                "name": "prometheus",
                                "image": args.config.prometheus_image,
                                "args": [
                                    "--config.file=/etc/prometheus/prometheus.yml",
                                    "--storage.tsdb.path=/prometheus",
                                    f"--storage.tsdb.retention.time={args.config.retention}",
                                    "--web.enable-lifecycle",
                                ],
                                "ports": [{"name": "http", "containerPort": PROMETHEUS_PORT}],
                                "resources": args.config.resources.as_kubernetes(),
                                "securityContext": restricted_container_security(),
                                "livenessProbe": {
                                    "httpGet": {"path": "/-/healthy", "port": "http"},
                                    "initialDelaySeconds": 30,
                                    "periodSeconds": 15,
                                },
                                "readinessProbe": {
                                    "httpGet": {"path": "/-/ready", "port": "http"},
                                    "initialDelaySeconds": 5,
                                    "periodSeconds": 5,
                                },
                                "volumeMounts": [
                                    {
                                        "name": "config",
                                        "mountPath": "/etc/prometheus/prometheus.yml",
                                        "subPath": "prometheus.yml",
                                    },
                                    {"name": "rules", "mountPath": "/etc/prometheus/rules"},
                                    {"name": "data", "mountPath": "/prometheus"},
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "config", "configMap": {"name": config_map.metadata["name"]}},
                            {"name": "rules", "configMap": {"name": rules_map.metadata["name"]}},
                            {
                                "name": "data",
                                "persistentVolumeClaim": {"claimName": storage.metadata["name"]},
                            },
                        ],
                    },
                },
            },
            opts=opts_k8s,
        )
        service = k8s_objects.Service(
            f"{name}-service",
            metadata={"name": app, "namespace": ns, "labels": app_labels},
            spec={
                "selector": selector(app),
                "ports": [{"name": "http", "port": PROMETHEUS_PORT, "targetPort": "http"}],
            },
            opts=opts_k8s,
        )
        self.prometheus_url = pulumi.Output.concat(
            "http://", service.metadata["name"], ".", ns, f".svc.cluster.local:{PROMETHEUS_PORT}"
        )
        self.register_outputs({"prometheusUrl": self.prometheus_url})
