"""Prometheus for the agent system: service discovery RBAC, generated config and alert
rules, and persistent storage."""

from __future__ import annotations

import hashlib
from typing import Annotated

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apps.v1 import Deployment, DeploymentSpecArgs, DeploymentStrategyArgs
from pulumi_kubernetes.core.v1 import (
    ConfigMap,
    ConfigMapVolumeSourceArgs,
    ContainerArgs,
    ContainerPortArgs,
    HTTPGetActionArgs,
    PersistentVolumeClaim,
    PersistentVolumeClaimSpecArgs,
    PersistentVolumeClaimVolumeSourceArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    Service,
    ServiceAccount,
    ServicePortArgs,
    ServiceSpecArgs,
    VolumeArgs,
    VolumeMountArgs,
    VolumeResourceRequirementsArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    NetworkPolicy,
    NetworkPolicyIngressRuleArgs,
    NetworkPolicyPeerArgs,
    NetworkPolicySpecArgs,
)
from pulumi_kubernetes.rbac.v1 import (
    ClusterRole,
    ClusterRoleBinding,
    PolicyRuleArgs,
    RoleRefArgs,
    SubjectArgs,
)
from pydantic import Field

from components.billing import Billable, Volume
from components.kube import (
    child_options,
    labels,
    match_labels,
    restricted_container_security,
    restricted_pod_security,
    selector,
    tcp_ports,
)
from components.prometheus_rules import AlertThresholds, alert_rules, scrape_config, to_yaml
from components.values import ArgsModel, ImageReference, PositiveInt, Resources, VolumeClaim

PROMETHEUS_PORT = 9090
PROMETHEUS_NAME = "prometheus"
PROMETHEUS_UID = 65534


class MonitoringConfig(ArgsModel):
    """Prometheus: the stack file's `monitoring` section."""

    prometheus_image: ImageReference = "prom/prometheus:v2.55.1"
    retention: Annotated[str, Field(pattern=r"^\d+[hdwy]$")] = "15d"
    storage_gi: PositiveInt = 20
    scrape_interval: Annotated[str, Field(pattern=r"^\d+[smh]$")] = "30s"
    resources: Resources = Resources(
        cpu_request="250m", cpu_limit="1", memory_request="512Mi", memory_limit="2Gi"
    )
    # Grafana dashboards as ConfigMaps for a Grafana sidecar (components/grafana_dashboards.py).
    dashboards: bool = False


class MonitoringArgs(ArgsModel):
    config: MonitoringConfig
    namespace: str
    thresholds: AlertThresholds
    provider: k8s.Provider
    gpu_namespace: str | None = None
    # Namespaces whose pods query Prometheus (KEDA's operator, for the vLLM autoscaler);
    # the namespace's default deny keeps everyone else out.
    query_client_namespaces: list[str] = Field(default_factory=list)
    # host:port of the Service serving the task stream's backlog, scraped as one target.
    queue_metrics_target: str | None = None


class Monitoring(pulumi.ComponentResource):
    prometheus_url: pulumi.Output[str]
    volume_claims: list[VolumeClaim]
    # What the data volume is billed by.
    bill: list[Billable]
    prometheus_config: str
    alert_rules: str

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:monitoring:Monitoring", name, None, opts)
        opts_k8s = child_options(self, opts, provider=args.provider)
        app = PROMETHEUS_NAME
        app_labels = labels(app, "monitoring")
        ns = args.namespace

        self.prometheus_config = to_yaml(
            scrape_config(
                ns, args.config.scrape_interval, args.gpu_namespace, args.queue_metrics_target
            )
        )
        self.alert_rules = to_yaml(alert_rules(args.thresholds))

        account = ServiceAccount(
            f"{name}-sa",
            metadata=ObjectMetaArgs(name=app, namespace=ns, labels=app_labels),
            opts=opts_k8s,
        )
        read = ["get", "list", "watch"]
        role = ClusterRole(
            f"{name}-discovery",
            metadata=ObjectMetaArgs(name=f"{ns}-prometheus-discovery", labels=app_labels),
            rules=[
                PolicyRuleArgs(
                    api_groups=[""],
                    resources=["pods", "services", "endpoints", "nodes"],
                    verbs=read,
                ),
                PolicyRuleArgs(
                    api_groups=["discovery.k8s.io"], resources=["endpointslices"], verbs=read
                ),
                PolicyRuleArgs(non_resource_urls=["/metrics"], verbs=["get"]),
            ],
            opts=opts_k8s,
        )
        ClusterRoleBinding(
            f"{name}-discovery",
            metadata=ObjectMetaArgs(name=f"{ns}-prometheus-discovery", labels=app_labels),
            role_ref=RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role.metadata.name
            ),
            subjects=[SubjectArgs(kind="ServiceAccount", name=account.metadata.name, namespace=ns)],
            opts=opts_k8s,
        )
        config_map = ConfigMap(
            f"{name}-config",
            metadata=ObjectMetaArgs(name="prometheus-config", namespace=ns, labels=app_labels),
            data={"prometheus.yml": self.prometheus_config},
            opts=opts_k8s,
        )
        rules_map = ConfigMap(
            f"{name}-rules",
            metadata=ObjectMetaArgs(name="prometheus-rules", namespace=ns, labels=app_labels),
            data={"agent-platform.yml": self.alert_rules},
            opts=opts_k8s,
        )
        self.volume_claims = [
            VolumeClaim(namespace=ns, name="prometheus-data", size_gi=args.config.storage_gi)
        ]
        self.bill = [Volume(name="prometheus-data", size_gib=float(args.config.storage_gi))]
        storage = PersistentVolumeClaim(
            f"{name}-data",
            metadata=ObjectMetaArgs(name="prometheus-data", namespace=ns, labels=app_labels),
            spec=PersistentVolumeClaimSpecArgs(
                access_modes=["ReadWriteOnce"],
                resources=VolumeResourceRequirementsArgs(
                    requests={"storage": f"{args.config.storage_gi}Gi"}
                ),
            ),
            opts=opts_k8s,
        )
        digest = hashlib.sha256((self.prometheus_config + self.alert_rules).encode()).hexdigest()[
            :16
        ]
        container = ContainerArgs(
            name="prometheus",
            image=args.config.prometheus_image,
            args=[
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                f"--storage.tsdb.retention.time={args.config.retention}",
                "--web.enable-lifecycle",
            ],
            ports=[ContainerPortArgs(name="http", container_port=PROMETHEUS_PORT)],
            resources=args.config.resources.as_kubernetes(),
            security_context=restricted_container_security(),
            liveness_probe=ProbeArgs(
                http_get=HTTPGetActionArgs(path="/-/healthy", port="http"),
                initial_delay_seconds=30,
                period_seconds=15,
            ),
            readiness_probe=ProbeArgs(
                http_get=HTTPGetActionArgs(path="/-/ready", port="http"),
                initial_delay_seconds=5,
                period_seconds=5,
            ),
            volume_mounts=[
                VolumeMountArgs(
                    name="config",
                    mount_path="/etc/prometheus/prometheus.yml",
                    sub_path="prometheus.yml",
                ),
                VolumeMountArgs(name="rules", mount_path="/etc/prometheus/rules"),
                VolumeMountArgs(name="data", mount_path="/prometheus"),
            ],
        )
        Deployment(
            f"{name}-prometheus",
            metadata=ObjectMetaArgs(name=app, namespace=ns, labels=app_labels),
            spec=DeploymentSpecArgs(
                replicas=1,
                # One writer to the volume at a time.
                strategy=DeploymentStrategyArgs(type="Recreate"),
                selector=match_labels(selector(app)),
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(
                        labels=app_labels,
                        annotations={"agent-platform.io/config-digest": digest},
                    ),
                    spec=PodSpecArgs(
                        service_account_name=account.metadata.name,
                        security_context=restricted_pod_security(PROMETHEUS_UID),
                        containers=[container],
                        volumes=[
                            VolumeArgs(
                                name="config",
                                config_map=ConfigMapVolumeSourceArgs(name=config_map.metadata.name),
                            ),
                            VolumeArgs(
                                name="rules",
                                config_map=ConfigMapVolumeSourceArgs(name=rules_map.metadata.name),
                            ),
                            VolumeArgs(
                                name="data",
                                persistent_volume_claim=PersistentVolumeClaimVolumeSourceArgs(
                                    claim_name=storage.metadata.name
                                ),
                            ),
                        ],
                    ),
                ),
            ),
            opts=opts_k8s,
        )
        service = Service(
            f"{name}-service",
            metadata=ObjectMetaArgs(name=app, namespace=ns, labels=app_labels),
            spec=ServiceSpecArgs(
                selector=selector(app),
                ports=[ServicePortArgs(name="http", port=PROMETHEUS_PORT, target_port="http")],
            ),
            opts=opts_k8s,
        )
        if args.query_client_namespaces:
            NetworkPolicy(
                f"{name}-query-clients",
                metadata=ObjectMetaArgs(name="prometheus-clients", namespace=ns, labels=app_labels),
                spec=NetworkPolicySpecArgs(
                    pod_selector=match_labels(selector(app)),
                    policy_types=["Ingress"],
                    ingress=[
                        NetworkPolicyIngressRuleArgs(
                            from_=[
                                NetworkPolicyPeerArgs(
                                    namespace_selector=match_labels(
                                        {"kubernetes.io/metadata.name": client}
                                    )
                                )
                                for client in args.query_client_namespaces
                            ],
                            ports=tcp_ports(PROMETHEUS_PORT),
                        )
                    ],
                ),
                opts=opts_k8s,
            )
        # Known once the Service exists, so that clients wait for it.
        self.prometheus_url = service.metadata.apply(lambda _: in_cluster_url(ns))
        self.register_outputs({"prometheusUrl": self.prometheus_url})


def in_cluster_url(namespace: str) -> str:
    """Prometheus's address inside the cluster, for clients set up before it exists."""
    return f"http://{PROMETHEUS_NAME}.{namespace}.svc.cluster.local:{PROMETHEUS_PORT}"
