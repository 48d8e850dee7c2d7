"""The `local` stack's cluster: the project's own local control plane
(scripts/local-cluster: a real API server, controllers and scheduler, with simulated
nodes), any cluster named by a kubeconfig, or no cluster at all, rendering manifests to a
directory instead."""

from __future__ import annotations

from typing import Any, Literal, Self

import pulumi
import pulumi_kubernetes as k8s
from pydantic import Field, model_validator

from components.kube import child_options
from components.simulated_nodes import SimulatedNodes, SimulatedNodesArgs, SimulatedPool
from components.values import ArgsModel, PositiveInt, Quantity


class LocalNodes(ArgsModel):
    """The local control plane's CPU nodes, spread round-robin over `zones` zones."""

    count: PositiveInt = 3
    zones: int = Field(default=2, ge=2, le=6, strict=True)
    cpu: Quantity = "4"
    memory: Quantity = "16Gi"
    ephemeral_storage: Quantity = "100Gi"

    @property
    def zone_names(self) -> list[str]:
        """The zones every simulated pool spreads over (GPU pools included)."""
        return [f"local-{chr(ord('a') + i)}" for i in range(self.zones)]

    def pool(self) -> SimulatedPool:
        return SimulatedPool(
            name="system",
            count=self.count,
            zones=self.zone_names,
            capacity={
                "cpu": self.cpu,
                "memory": self.memory,
                "ephemeral-storage": self.ephemeral_storage,
            },
        )


class LocalClusterArgs(ArgsModel):
    """Where the `local` stack's objects go: the stack file's `local` section.

    `target: cluster` deploys through `kubeconfig` (scripts/pulumi-local sets it to the
    local control plane's) or `kubeconfigContext`; `nodes` then declares the simulated
    nodes of the project's own control plane (leave it out for any other cluster).
    `target: render` writes manifests to `renderDirectory`, Secrets to `secretsDirectory`.
    """

    target: Literal["cluster", "render"] = "render"
    render_directory: str = "build/manifests/local"
    secrets_directory: str = "build/secrets/local"
    kubeconfig: str | None = None
    kubeconfig_context: str | None = None
    nodes: LocalNodes | None = None

    @model_validator(mode="before")
    @classmethod
    def _a_kubeconfig_means_a_cluster(cls, data: Any) -> Any:
        """Without `target`, naming a kubeconfig or context means deploying there."""
        if isinstance(data, dict) and "target" not in data:
            names = ("kubeconfig", "kubeconfig_context", "kubeconfigContext")
            if any(data.get(key) is not None for key in names):
                return {**data, "target": "cluster"}
        return data

    @model_validator(mode="after")
    def _what_the_target_needs(self) -> Self:
        if self.target == "cluster":
            if self.kubeconfig is None and self.kubeconfig_context is None:
                raise ValueError(
                    "target cluster needs kubeconfig or kubeconfigContext: `make up` "
                    "(scripts/pulumi-local) sets kubeconfig to the local control plane's"
                )
        elif self.render_directory == self.secrets_directory:
            raise ValueError(
                "secrets_directory must differ from render_directory: the rendered "
                "manifests are meant to be shared, Secret manifests are not"
            )
        return self

    @property
    def simulated(self) -> bool:
        """Whether this is the project's own control plane, with simulated nodes."""
        return self.target == "cluster" and self.nodes is not None


class LocalCluster(pulumi.ComponentResource):
    """Exposes `provider` for shareable objects and `secrets_provider` for Secrets.

    In render mode Secrets carry their values in plain base64, so they are written to a
    separate directory that is never shared; against a real cluster both providers are
    the same.
    """

    provider: k8s.Provider
    secrets_provider: k8s.Provider
    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(
        self, name: str, args: LocalClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:cluster:LocalCluster", name, None, opts)
        child = child_options(self, opts)
        if args.target == "cluster":
            # A path, not the file's contents: no credential goes into the state. (A
            # context alone keeps the provider's earlier name, so its objects stay.)
            self.provider = k8s.Provider(
                f"{name}-context" if args.kubeconfig is None else f"{name}-cluster",
                kubeconfig=args.kubeconfig,
                context=args.kubeconfig_context,
                opts=child,
            )
            self.secrets_provider = self.provider
            self.cluster_name = pulumi.Output.from_input(
                args.kubeconfig_context or "agent-platform-local"
            )
            if args.nodes is not None:
                SimulatedNodes(
                    f"{name}-nodes",
                    SimulatedNodesArgs(pools=[args.nodes.pool()], provider=self.provider),
                    opts=child,
                )
        else:
            self.provider = k8s.Provider(
                f"{name}-render", render_yaml_to_directory=args.render_directory, opts=child
            )
            self.secrets_provider = k8s.Provider(
                f"{name}-render-secrets",
                render_yaml_to_directory=args.secrets_directory,
                opts=child,
            )
            self.cluster_name = pulumi.Output.from_input(f"{name} (rendered)")
        # A local target has no kubeconfig of its own to hand out; the contract still
        # exports the key, as an empty secret.
        self.kubeconfig = pulumi.Output.secret("")
        self.register_outputs({"clusterName": self.cluster_name, "kubeconfig": self.kubeconfig})
