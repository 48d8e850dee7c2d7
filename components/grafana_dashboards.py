"""The dashboards of components/dashboards.py as ConfigMaps for the Grafana sidecar: a
Grafana installed with its dashboard sidecar (the grafana Helm chart's
`sidecar.dashboards.enabled`, kube-prometheus-stack's default) loads every ConfigMap
labelled `grafana_dashboard: "1"`. The stack installs no Grafana: whichever one the
cluster runs picks these up."""

from __future__ import annotations

import json

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import ConfigMap
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.dashboards import DashboardsConfig, dashboards
from components.kube import child_options, labels
from components.values import ArgsModel

# The label the sidecar watches for, and the value it expects.
SIDECAR_LABEL = "grafana_dashboard"
SIDECAR_VALUE = "1"


class GrafanaDashboardsArgs(ArgsModel):
    dashboards: DashboardsConfig
    namespace: str
    provider: k8s.Provider


class GrafanaDashboards(pulumi.ComponentResource):
    # The rendered dashboards, by uid: what the ConfigMaps hold.
    rendered: dict[str, str]

    def __init__(
        self, name: str, args: GrafanaDashboardsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:monitoring:GrafanaDashboards", name, None, opts)
        opts_k8s = child_options(self, opts, provider=args.provider)
        self.rendered = {
            uid: json.dumps(model, indent=2, sort_keys=True)
            for uid, model in dashboards(args.dashboards).items()
        }
        for uid, text in self.rendered.items():
            ConfigMap(
                f"{name}-{uid}",
                metadata=ObjectMetaArgs(
                    name=f"grafana-dashboard-{uid}",
                    namespace=args.namespace,
                    labels={
                        **labels("grafana-dashboards", "monitoring"),
                        SIDECAR_LABEL: SIDECAR_VALUE,
                    },
                ),
                data={f"{uid}.json": text},
                opts=opts_k8s,
            )
        self.register_outputs({"dashboards": sorted(self.rendered)})
