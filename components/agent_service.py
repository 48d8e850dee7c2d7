"""The agent service: the HTTP API and the queue workers of each release track, with
the ServiceAccount, config, Services, disruption budgets and network policies they
share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s

from components import k8s_objects
from components.kube import (
    NAME_LABEL,
    TRACK_LABEL,
    VERSION_LABEL,
    child_options,
    labels,
    restricted_container_security,
    restricted_pod_security,
    selector,
    spread_over_zones_and_nodes,
)
from components.secrets import API_KEYS_KEY, LLM_API_KEY_KEY, REDIS_PASSWORD_KEY
from stacks.config import Resources

API_NAME = "agent-api"
WORKER_NAME = "agent-worker"
API_PORT = 8080
WORKER_PORT = 8081
APP_UID = 10001
# The identity the agent pods run as; IRSA trusts it by this name.
SERVICE_ACCOUNT = "agent"

Track = Literal["stable", "canary"]


@dataclass(frozen=True)
class ReleaseTrack:
    track: Track
    version: str
    image: pulumi.Input[str]
    # Autoscaling owns the replica count; this is only the floor the PDB protects.
    min_replicas: int

    def __post_init__(self) -> None:
        if self.min_replicas < 1:
            raise ValueError(f"{self.track}: min_replicas must be at least 1")


@dataclass(frozen=True)
class AgentServiceArgs:
    namespace: str
    provider: k8s.Provider
    tracks: Sequence[ReleaseTrack]
    api_resources: Resources
    worker_resources: Resources
    secret_name: pulumi.Input[str]
    # Non-secret settings for the app, as AGENT_* environment variables.
    settings: Mapping[str, pulumi.Input[str]]
    service_account_annotations: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # Which namespaces may reach the API (the ingress controller's, for instance).
    api_client_namespaces: Sequence[str] = ()

    def __post_init__(self) -> None:
        names = [t.track for t in self.tracks]
        if names.count("stable") != 1:
            raise ValueError("exactly one stable track is required")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate tracks: {names}")
        bad = [k for k in self.settings if not k.startswith("AGENT_")]
        if bad:
            raise ValueError(f"settings must be AGENT_* variables: {bad}")


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

        account = k8s_objects.ServiceAccount(
            f"{name}-sa",
            metadata={
                "name": SERVICE_ACCOUNT,
                "namespace": ns,
                "labels": labels("agent", "identity"),
                "annotations": dict(args.service_account_annotations),
            },
            automountServiceAccountToken=False,
            opts=self._opts,
        )
        settings = k8s_objects.ConfigMap(
            f"{name}-settings",
            metadata={
                "name": "agent-settings",
                "namespace": ns,
                "labels": labels("agent", "config"),
            },
            data=dict(args.settings),
            opts=self._opts,
        )
        self._account_name = account.metadata["name"]
        self._settings_name = settings.metadata["name"]

        shared = k8s_objects.Service(
            f"{name}-api",
            metadata={"name": API_NAME, "namespace": ns, "labels": labels(API_NAME, "api")},
            spec={
                "selector": selector(API_NAME),
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
            opts=self._opts,
        )
        self.api_service_name = shared.metadata["name"]
        self.endpoint = pulumi.Output.concat(
            "http://", shared.metadata["name"], ".", ns, ".svc.cluster.local"
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
            port=API_PORT,
            port_variable="AGENT_PORT",
            resources=self._args.api_resources,
        )
        worker = self._deployment(
            f"{name}-worker-{track.track}",
            f"{WORKER_NAME}-{track.track}" if track.track != "stable" else WORKER_NAME,
            WORKER_NAME,
            track,
            command=["agent-app", "worker"],
            port=WORKER_PORT,
            port_variable="AGENT_WORKER_PORT",
            resources=self._args.worker_resources,
        )
        service = k8s_objects.Service(
            f"{name}-api-{track.track}",
            metadata={
                "name": f"{API_NAME}-{track.track}",
                "namespace": ns,
                "labels": labels(API_NAME, "api", **track_labels),
            },
            spec={
                "selector": selector(API_NAME, **track_labels),
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
            opts=self._opts,
        )
        self.track_service_names[track.track] = service.metadata["name"]
        self.deployments[track.track] = {"api": api, "worker": worker}

    def _deployment(
        self,
        resource_name: str,
        deployment_name: str,
        app: str,
        track: ReleaseTrack,
        command: list[str],
        port: int,
        port_variable: str,
        resources: Resources,
    ) -> pulumi.Output[str]:
        ns = self._args.namespace
        match = selector(app, **{TRACK_LABEL: track.track})
        pod_labels = labels(
            app, "agent", **{TRACK_LABEL: track.track, VERSION_LABEL: track.version}
        )
        secret = self._args.secret_name
        env: list[dict[str, Any]] = [
            {"name": "AGENT_RELEASE_VERSION", "value": track.version},
            {"name": "AGENT_RELEASE_TRACK", "value": track.track},
            {"name": port_variable, "value": str(port)},
            {
                "name": "AGENT_REDIS_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": REDIS_PASSWORD_KEY}},
            },
            {
                "name": "AGENT_LLM_API_KEY",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": LLM_API_KEY_KEY}},
            },
            {
                "name": "AGENT_API_KEYS_SHA256",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": API_KEYS_KEY}},
            },
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ]
        deployment = k8s_objects.Deployment(
            resource_name,
            metadata={"name": deployment_name, "namespace": ns, "labels": pod_labels},
            spec={
                # No replicas: the autoscaler owns the count, and a replicas field here
                # would reset it on every `pulumi up`.
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": match},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
                },
                "template": {
                    "metadata": {
                        "labels": pod_labels,
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(port),
                            "prometheus.io/path": "/metrics",
                        },
                    },
                    "spec": {
                        "serviceAccountName": self._account_name,
                        "automountServiceAccountToken": False,
                        "securityContext": restricted_pod_security(APP_UID),
                        "terminationGracePeriodSeconds": 60,
                        "topologySpreadConstraints": spread_over_zones_and_nodes(match),
                        "containers": [
                            {
                                "name": app.removeprefix("agent-"),
                                "image": track.image,
                                "command": command,
                                "ports": [{"name": "http", "containerPort": port}],
                                "envFrom": [{"configMapRef": {"name": self._settings_name}}],
                                "env": env,
                                "resources": resources.as_kubernetes(),
                                "securityContext": restricted_container_security(),
                                # Liveness only asks whether the process serves; readiness
                                # also needs Redis and a closed LLM circuit, so a Redis
                                # outage takes pods out of rotation without restarting them.
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": "http"},
                                    "initialDelaySeconds": 10,
                                    "periodSeconds": 15,
                                    "timeoutSeconds": 3,
                                    "failureThreshold": 4,
                                },
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": "http"},
                                    "initialDelaySeconds": 3,
                                    "periodSeconds": 5,
                                    "timeoutSeconds": 3,
                                    "failureThreshold": 2,
                                },
                                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            }
                        ],
                        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "128Mi"}}],
                    },
                },
            },
            opts=self._opts,
        )
        if track.min_replicas > 1:
            k8s_objects.PodDisruptionBudget(
                resource_name,
                metadata={"name": deployment_name, "namespace": ns, "labels": pod_labels},
                spec={"minAvailable": track.min_replicas - 1, "selector": {"matchLabels": match}},
                opts=self._opts,
            )
        return deployment.metadata.apply(lambda m: m.get("name") or deployment_name)

    def _network_policies(self, name: str) -> None:
        ns = self._args.namespace
        api_sources: list[dict[str, Any]] = [{"podSelector": {}}]
        api_sources += [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": client}}}
            for client in self._args.api_client_namespaces
        ]
        k8s_objects.NetworkPolicy(
            f"{name}-api-ingress",
            metadata={
                "name": "agent-api-ingress",
                "namespace": ns,
                "labels": labels(API_NAME, "network"),
            },
            spec={
                "podSelector": {"matchLabels": {NAME_LABEL: API_NAME}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": api_sources, "ports": [{"protocol": "TCP", "port": API_PORT}]}
                ],
            },
            opts=self._opts,
        )
        k8s_objects.NetworkPolicy(
            f"{name}-worker-ingress",
            metadata={
                "name": "agent-worker-ingress",
                "namespace": ns,
                "labels": labels(WORKER_NAME, "network"),
            },
            spec={
                "podSelector": {"matchLabels": {NAME_LABEL: WORKER_NAME}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {NAME_LABEL: "prometheus"}}}],
                        "ports": [{"protocol": "TCP", "port": WORKER_PORT}],
                    }
                ],
            },
            opts=self._opts,
        )
