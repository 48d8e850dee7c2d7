"""Storage for the local control plane: a default StorageClass and one PersistentVolume
per claim the stack makes, bound to that claim in advance.

EKS provisions a volume for each claim (its default StorageClass); the local cluster has
no provisioner and no kubelet to mount anything, so the volumes are declared statically
and `Retain`ed. Each names its claim (`claimRef`), so the PersistentVolume controller binds
exactly that pair, and the Kubernetes provider's wait for a claim, a StatefulSet or a
Deployment that mounts one ends as it would on EKS.
"""

from __future__ import annotations

import pulumi
from pulumi_kubernetes.core.v1 import (
    HostPathVolumeSourceArgs,
    ObjectReferenceArgs,
    PersistentVolume,
    PersistentVolumeSpecArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pulumi_kubernetes.storage.v1 import StorageClass
from pydantic import Field

from components.kube import child_options
from components.values import ArgsModel, VolumeClaim

STORAGE_CLASS = "local-static"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


class LocalStorageArgs(ArgsModel):
    claims: list[VolumeClaim] = Field(min_length=1)
    provider: pulumi.ProviderResource


class LocalStorage(pulumi.ComponentResource):
    """Exposes `storage_class`, the cluster's default class."""

    storage_class: pulumi.Output[str]

    def __init__(
        self, name: str, args: LocalStorageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:cluster:LocalStorage", name, None, opts)
        child = child_options(self, opts, provider=args.provider)
        storage_class = StorageClass(
            f"{name}-class",
            metadata=ObjectMetaArgs(
                name=STORAGE_CLASS, annotations={DEFAULT_CLASS_ANNOTATION: "true"}
            ),
            provisioner="kubernetes.io/no-provisioner",
            reclaim_policy="Retain",
            volume_binding_mode="Immediate",
            opts=child,
        )
        for claim in args.claims:
            PersistentVolume(
                f"{name}-{claim.namespace}-{claim.name}",
                metadata=ObjectMetaArgs(name=f"local-{claim.namespace}-{claim.name}"),
                spec=PersistentVolumeSpecArgs(
                    storage_class_name=STORAGE_CLASS,
                    capacity={"storage": f"{claim.size_gi}Gi"},
                    access_modes=list(claim.access_modes),
                    persistent_volume_reclaim_policy="Retain",
                    claim_ref=ObjectReferenceArgs(namespace=claim.namespace, name=claim.name),
                    # Never mounted: no kubelet runs on the simulated nodes.
                    host_path=HostPathVolumeSourceArgs(
                        path=f"/var/lib/agent-platform/{claim.namespace}/{claim.name}"
                    ),
                ),
                opts=pulumi.ResourceOptions.merge(
                    child, pulumi.ResourceOptions(depends_on=[storage_class])
                ),
            )
        self.storage_class = storage_class.metadata.name
        self.register_outputs({"storageClass": self.storage_class})
