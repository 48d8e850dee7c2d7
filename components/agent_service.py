"""The agent service: the HTTP API and the queue workers of each release track, with
the ServiceAccount, config, Services, disruption budgets and network policies they
share.

Metrics stay private. The API serves them on a port of their own (`metrics`, 9464), which
its public Services do not expose and its NetworkPolicy opens to Prometheus alone: the
series name tenants and their budget ratios. Prometheus scrapes each pod there (the
`prometheus.io/*` annotations), and scrapes the task stream's backlog once, through the
`agent-metrics` Service, as one target: the backlog is a fact about Redis that every
replica would otherwise export, and `sum()` over pods would count once per replica.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal, Self

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apps.v1 import (
    Deployment,
    DeploymentSpecArgs,
    DeploymentStrategyArgs,
    RollingUpdateDeploymentArgs,
)
from pulumi_kubernetes.core.v1 import (
    ConfigMap,
    ConfigMapEnvSourceArgs,
    ContainerArgs,
    ContainerPortArgs,
    EmptyDirVolumeSourceArgs,
    EnvFromSourceArgs,
    EnvVarArgs,
    EnvVarSourceArgs,
    HTTPGetActionArgs,
    KeyToPathArgs,
    ObjectFieldSelectorArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    SecretVolumeSourceArgs,
    Service,
    ServiceAccount,
    ServicePortArgs,
    ServiceSpecArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    NetworkPolicy,
    NetworkPolicyIngressRuleArgs,
    NetworkPolicyPeerArgs,
    NetworkPolicySpecArgs,
)
from pulumi_kubernetes.policy.v1 import PodDisruptionBudget, PodDisruptionBudgetSpecArgs
from pydantic import Field, model_validator

from components.kube import (
    NAME_LABEL,
    TRACK_LABEL,
    VERSION_LABEL,
    WORKLOAD_LABEL,
    child_options,
    labels,
    match_labels,
    prometheus_scrapes,
    restricted_container_security,
    restricted_pod_security,
    selector,
    spread_over_zones_and_nodes,
    tcp_ports,
)
from components.secrets import API_KEYS_KEY, LLM_API_KEY_KEY, REDIS_PASSWORD_KEY
from components.values import ArgsModel, InputStr, NonNegativeInt, PositiveInt, Resources

API_NAME = "agent-api"
WORKER_NAME = "agent-worker"
API_PORT = 8080
WORKER_PORT = 8081
# The API's private metrics port (AGENT_METRICS_PORT): `/metrics` and `/metrics/queue`.
METRICS_PORT = 9464
# The Service through which Prometheus reads the backlog from any one API pod.
QUEUE_METRICS_SERVICE = "agent-metrics"
QUEUE_METRICS_PATH = "/metrics/queue"
APP_UID = 10001
# The identity the agent pods run as; IRSA trusts it by this name.
SERVICE_ACCOUNT = "agent"

# The app's secrets arrive as files here (agent_app/settings.py reads the directory named
# by AGENT_SECRETS_DIR), never as environment variables: a process's environment is
# inherited by its children and shown by `/proc/<pid>/environ` and crash reports.
SECRETS_MOUNT = "/etc/agent/secrets"
# Owner-read only; the kubelet adds group read for the pod's fsGroup (the app's own
# group, components/kube.py), so the app user reads them and nobody else in the pod.
SECRET_FILE_MODE = 0o400
# Which of the Secret's keys each role's pods get, under the file name the app reads:
# the API checks tenants' keys, the workers call the model (whose key the API never
# needs); both reach Redis.
SECRET_FILES: dict[str, dict[str, str]] = {
    API_NAME: {REDIS_PASSWORD_KEY: "AGENT_REDIS_PASSWORD", API_KEYS_KEY: "AGENT_API_KEYS_SHA256"},
    WORKER_NAME: {REDIS_PASSWORD_KEY: "AGENT_REDIS_PASSWORD", LLM_API_KEY_KEY: "AGENT_LLM_API_KEY"},
}

Track = Literal["stable", "canary"]


def secret_volume(secret_name: InputStr, app: str) -> VolumeArgs:
    """The app Secret as a read-only directory holding only the keys `app` uses."""
    return VolumeArgs(
        name="secrets",
        secret=SecretVolumeSourceArgs(
            secret_name=secret_name,
            default_mode=SECRET_FILE_MODE,
            items=[KeyToPathArgs(key=key, path=path) for key, path in SECRET_FILES[app].items()],
        ),
    )


# A release's version, as the pods' `app.kubernetes.io/version` label carries it.
Version = Annotated[str, Field(min_length=1, max_length=63)]


class ReleaseTrack(ArgsModel):
    track: Track
    version: Version
    image: InputStr
    # Autoscaling owns the replica count; these are only the floors the PDBs protect
    # (the workers' may be 0: scaled to zero while the task stream is empty).
    min_replicas: PositiveInt
    worker_min_replicas: NonNegativeInt | None = None


class AgentServiceArgs(ArgsModel):
    namespace: str
    provider: k8s.Provider
    tracks: Sequence[ReleaseTrack]
    api_resources: Resources
    worker_resources: Resources
    secret_name: InputStr
    # Non-secret settings for the app, as AGENT_* environment variables.
    settings: Mapping[str, InputStr]
    service_account_annotations: Mapping[str, InputStr] = {}
    # Which namespaces may reach the API (the ingress controller's, for instance).
    api_client_namespaces: Sequence[str] = ()
    # Flagger releases the stable track (components/progressive_delivery.py): its
    # Deployments are the canaries of the `-primary` copies Flagger makes of them.
    progressive: bool = False

    @model_validator(mode="after")
    def _one_stable_track_and_app_settings(self) -> Self:
        names = [t.track for t in self.tracks]
        if names.count("stable") != 1:
            raise ValueError("exactly one stable track is required")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate tracks: {names}")
        if self.progressive and names != ["stable"]:
            raise ValueError("under Flagger the stable track is the only one declared")
        bad = [k for k in self.settings if not k.startswith("AGENT_")]
        if bad:
            raise ValueError(f"settings must be AGENT_* variables: {bad}")
        return self


class AgentService(pulumi.ComponentResource):
    """Exposes, per track, the names of the Deployments autoscaling must target."""

    api_service_name: pulumi.Output[str]
    track_service_names: dict[str, pulumi.Output[str]]
    deployments: dict[str, dict[str, pulumi.Output[str]]]
    endpoint: pulumi.Output[str]

    def __init__(
        self, name: str, args: AgentServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:agent:AgentService", name, None, opts)
        self._args = args
        self._opts = child_options(self, opts, provider=args.provider)
        ns = args.namespace

        account = ServiceAccount(
            f"{name}-sa",
            metadata=ObjectMetaArgs(
                name=SERVICE_ACCOUNT,
                namespace=ns,
                labels=labels("agent", "identity"),
                annotations=dict(args.service_account_annotations),
            ),
            automount_service_account_token=False,
            opts=self._opts,
        )
        settings = ConfigMap(
            f"{name}-settings",
            metadata=ObjectMetaArgs(
                name="agent-settings", namespace=ns, labels=labels("agent", "config")
            ),
            data=dict(args.settings),
            opts=self._opts,
        )
        self._account_name = account.metadata.name
        self._settings_name = settings.metadata.name

        shared = Service(
            f"{name}-api",
            metadata=ObjectMetaArgs(name=API_NAME, namespace=ns, labels=labels(API_NAME, "api")),
            spec=_http_service(selector(API_NAME)),
            opts=self._opts,
        )
        self.api_service_name = shared.metadata.name
        self.endpoint = pulumi.Output.concat(
            "http://", shared.metadata.name, ".", ns, ".svc.cluster.local"
        )
        Service(
            f"{name}-metrics",
            metadata=ObjectMetaArgs(
                name=QUEUE_METRICS_SERVICE, namespace=ns, labels=labels(API_NAME, "metrics")
            ),
            spec=ServiceSpecArgs(
                selector=selector(API_NAME),
                ports=[ServicePortArgs(name="metrics", port=METRICS_PORT, target_port="metrics")],
            ),
            opts=self._opts,
        )
        self.track_service_names = {}
        self.deployments = {}
        for track in args.tracks:
            self._track(name, track)
        self._network_policies(name)
        self.register_outputs(
            {
                "apiServiceName": self.api_service_name,
                "endpoint": self.endpoint,
                "deployments": self.deployments,
            }
        )

    def _track(self, name: str, track: ReleaseTrack) -> None:
        ns = self._args.namespace
        track_labels = {TRACK_LABEL: track.track}
        api = self._deployment(
            f"{name}-api-{track.track}",
            f"{API_NAME}-{track.track}" if track.track != "stable" else API_NAME,
            API_NAME,
            track,
            command=["agent-app", "serve"],
            ports={
                "AGENT_PORT": ("http", API_PORT),
                "AGENT_METRICS_PORT": ("metrics", METRICS_PORT),
            },
            min_replicas=track.min_replicas,
            resources=self._args.api_resources,
        )
        worker = self._deployment(
            f"{name}-worker-{track.track}",
            f"{WORKER_NAME}-{track.track}" if track.track != "stable" else WORKER_NAME,
            WORKER_NAME,
            track,
            command=["agent-app", "worker"],
            # Probes and the worker's own metrics; no Service selects the workers.
            ports={"AGENT_WORKER_PORT": ("http", WORKER_PORT)},
            min_replicas=track.min_replicas
            if track.worker_min_replicas is None
            else track.worker_min_replicas,
            resources=self._args.worker_resources,
        )
        service = Service(
            f"{name}-api-{track.track}",
            metadata=ObjectMetaArgs(
                name=f"{API_NAME}-{track.track}",
                namespace=ns,
                labels=labels(API_NAME, "api", **track_labels),
            ),
            spec=_http_service(selector(API_NAME, **track_labels)),
            opts=self._opts,
        )
        self.track_service_names[track.track] = service.metadata.name
        self.deployments[track.track] = {"api": api, "worker": worker}

    def _deployment(
        self,
        resource_name: str,
        deployment_name: str,
        app: str,
        track: ReleaseTrack,
        command: list[str],
        ports: dict[str, tuple[str, int]],
        min_replicas: int,
        resources: Resources,
    ) -> pulumi.Output[str]:
        """`ports`: the app's port variable -> (container port name, number); Prometheus
        scrapes the one named `metrics`, else `http`."""
        ns = self._args.namespace
        names = dict(ports.values())
        scraped = names.get("metrics", names["http"])
        match = selector(app, **{TRACK_LABEL: track.track})
        pod_labels = labels(
            app, "agent", **{TRACK_LABEL: track.track, VERSION_LABEL: track.version}
        )
        # Under Flagger the Deployment also selects by the label Flagger rewrites on its
        # primary copy; the spread and the PDB keep counting every pod of the role, the
        # primary's and the canary's (a PDB's integer minAvailable may span controllers).
        selected = dict(match)
        if self._args.progressive:
            pod_labels[WORKLOAD_LABEL] = selected[WORKLOAD_LABEL] = deployment_name

        env = [
            EnvVarArgs(name="AGENT_RELEASE_VERSION", value=track.version),
            EnvVarArgs(name="AGENT_RELEASE_TRACK", value=track.track),
            *(EnvVarArgs(name=variable, value=str(port)) for variable, (_, port) in ports.items()),
            EnvVarArgs(name="AGENT_SECRETS_DIR", value=SECRETS_MOUNT),
            EnvVarArgs(
                name="POD_NAME",
                value_from=EnvVarSourceArgs(
                    field_ref=ObjectFieldSelectorArgs(field_path="metadata.name")
                ),
            ),
        ]
        container = ContainerArgs(
            name=app.removeprefix("agent-"),
            image=track.image,
            command=command,
            ports=[
                ContainerPortArgs(name=port_name, container_port=port)
                for port_name, port in ports.values()
            ],
            env_from=[
                EnvFromSourceArgs(config_map_ref=ConfigMapEnvSourceArgs(name=self._settings_name))
            ],
            env=env,
            resources=resources.as_kubernetes(),
            security_context=restricted_container_security(),
            # Liveness only asks whether the process serves; readiness also needs Redis
            # and a closed LLM circuit, so a Redis outage takes pods out of rotation
            # without restarting them.
            liveness_probe=ProbeArgs(
                http_get=HTTPGetActionArgs(path="/health", port="http"),
                initial_delay_seconds=10,
                period_seconds=15,
                timeout_seconds=3,
                failure_threshold=4,
            ),
            readiness_probe=ProbeArgs(
                http_get=HTTPGetActionArgs(path="/ready", port="http"),
                initial_delay_seconds=3,
                period_seconds=5,
                timeout_seconds=3,
                failure_threshold=2,
            ),
            volume_mounts=[
                VolumeMountArgs(name="tmp", mount_path="/tmp"),
                VolumeMountArgs(name="secrets", mount_path=SECRETS_MOUNT, read_only=True),
            ],
        )
        deployment = Deployment(
            resource_name,
            metadata=ObjectMetaArgs(name=deployment_name, namespace=ns, labels=pod_labels),
            spec=DeploymentSpecArgs(
                # No replicas: the autoscaler owns the count, and a replicas field here
                # would reset it on every `pulumi up`.
                revision_history_limit=5,
                selector=match_labels(selected),
                strategy=DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=RollingUpdateDeploymentArgs(max_surge="25%", max_unavailable=0),
                ),
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(
                        labels=pod_labels,
                        annotations={
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(scraped),
                            "prometheus.io/path": "/metrics",
                        },
                    ),
                    spec=PodSpecArgs(
                        service_account_name=self._account_name,
                        automount_service_account_token=False,
                        # The app finds its peers by DNS; service links would put a
                        # variable such as AGENT_METRICS_PORT=tcp://... (from the
                        # agent-metrics Service) over the app's own settings.
                        enable_service_links=False,
                        security_context=restricted_pod_security(APP_UID),
                        termination_grace_period_seconds=60,
                        topology_spread_constraints=spread_over_zones_and_nodes(match),
                        containers=[container],
                        volumes=[
                            VolumeArgs(
                                name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="128Mi")
                            ),
                            secret_volume(self._args.secret_name, app),
                        ],
                    ),
                ),
            ),
            opts=self._opts,
        )
        if min_replicas > 1:
            PodDisruptionBudget(
                resource_name,
                metadata=ObjectMetaArgs(name=deployment_name, namespace=ns, labels=pod_labels),
                spec=PodDisruptionBudgetSpecArgs(
                    min_available=min_replicas - 1, selector=match_labels(match)
                ),
                opts=self._opts,
            )
        return deployment.metadata.apply(lambda m: m.name or deployment_name)

    def _network_policies(self, name: str) -> None:
        ns = self._args.namespace
        api_sources = [NetworkPolicyPeerArgs(pod_selector=LabelSelectorArgs())]
        api_sources += [
            NetworkPolicyPeerArgs(
                namespace_selector=match_labels({"kubernetes.io/metadata.name": client})
            )
            for client in self._args.api_client_namespaces
        ]
        NetworkPolicy(
            f"{name}-api-ingress",
            metadata=ObjectMetaArgs(
                name="agent-api-ingress", namespace=ns, labels=labels(API_NAME, "network")
            ),
            spec=NetworkPolicySpecArgs(
                pod_selector=match_labels({NAME_LABEL: API_NAME}),
                policy_types=["Ingress"],
                ingress=[
                    NetworkPolicyIngressRuleArgs(from_=api_sources, ports=tcp_ports(API_PORT)),
                    # The metrics port: Prometheus only, per pod and through agent-metrics.
                    prometheus_scrapes(METRICS_PORT),
                ],
            ),
            opts=self._opts,
        )
        NetworkPolicy(
            f"{name}-worker-ingress",
            metadata=ObjectMetaArgs(
                name="agent-worker-ingress", namespace=ns, labels=labels(WORKER_NAME, "network")
            ),
            spec=NetworkPolicySpecArgs(
                pod_selector=match_labels({NAME_LABEL: WORKER_NAME}),
                policy_types=["Ingress"],
                ingress=[prometheus_scrapes(WORKER_PORT)],
            ),
            opts=self._opts,
        )


def _http_service(selected: dict[str, str]) -> ServiceSpecArgs:
    """A Service forwarding port 80 to the selected pods' `http` port, and nothing else:
    not their metrics port."""
    return ServiceSpecArgs(
        selector=selected,
        ports=[ServicePortArgs(name="http", port=80, target_port="http")],
    )
