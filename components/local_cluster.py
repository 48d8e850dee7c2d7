"""The `local` stack's stand-in for a cluster: a Kubernetes provider that renders
manifests to a directory, or one that targets a kubeconfig context."""

from __future__ import annotations

from typing import Self

import pulumi
import pulumi_kubernetes as k8s
from pydantic import model_validator

from components.kube import child_options
from components.values import ArgsModel


class LocalClusterArgs(ArgsModel):
    """Where the `local` stack's objects go: the stack file's `local` section."""

    render_directory: str = "build/manifests/local"
    secrets_directory: str = "build/secrets/local"
    # Deploy to this context instead of rendering.
    kubeconfig_context: str | None = None

    @model_validator(mode="after")
    def _secrets_apart(self) -> Self:
        if self.kubeconfig_context is None and self.render_directory == self.secrets_directory:
            raise ValueError(
                "secrets_directory must differ from render_directory: the rendered "
                "manifests are meant to be shared, Secret manifests are not"
            )
        return self


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
        if args.kubeconfig_context is not None:
            self.provider = k8s.Provider(
                f"{name}-context", context=args.kubeconfig_context, opts=child
            )
            self.secrets_provider = self.provider
            self.cluster_name = pulumi.Output.from_input(args.kubeconfig_context)
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
