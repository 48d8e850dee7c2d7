"""What a component's resources are billed by, declared by the component from its Args.

The program prices these parts for its cost output; the policy pack reads the same parts
out of the resources' properties. Both go through one price list (`costing/`), and a test
holds the two readings equal for every stack. Each part names the resource it is billed
through, as the pack sees it (`kind`, its type's last segment; `name`, `metadata.name` for
Kubernetes objects, else the Pulumi name), so that both readings label a line alike.

Values only: this module imports nothing, so `costing/` may read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ControlPlane:
    """An EKS cluster's control plane; its presence makes Kubernetes objects cost money."""

    kind: str = "Cluster"
    name: str


@dataclass(frozen=True, kw_only=True)
class NodePool:
    """A managed node group, priced at its dearest instance type."""

    kind: str = "NodeGroup"
    name: str
    instance_types: tuple[str, ...]
    spot: bool
    desired: float
    maximum: float


@dataclass(frozen=True, kw_only=True)
class ProvisionedNodes:
    """A Karpenter NodePool: nodes launched for pending pods, up to the NodePool's
    `limits` (resource name -> amount, e.g. `nvidia.com/gpu` and `cpu`). Expected: the
    nodes the GPU workloads need at rest (`expected_gpus`); worst case: the nodes the
    limits allow."""

    kind: str = "NodePool"
    name: str
    instance_types: tuple[str, ...]
    spot: bool
    limits: tuple[tuple[str, float], ...]
    expected_gpus: float


@dataclass(frozen=True, kw_only=True)
class NatGateway:
    kind: str = "NatGateway"
    name: str


@dataclass(frozen=True, kw_only=True)
class CacheNodes:
    """An ElastiCache replication group's nodes."""

    kind: str = "ReplicationGroup"
    name: str
    node_type: str
    nodes: float


@dataclass(frozen=True, kw_only=True)
class LoadBalancer:
    """A cloud load balancer: `application`, `network` or `classic`. One that a
    Kubernetes Service asks for (`in_cluster`) exists only on a cloud cluster."""

    kind: str
    name: str
    type: str
    in_cluster: bool


@dataclass(frozen=True, kw_only=True)
class Volume:
    """`count` volumes of `size_gib` each, claimed in Kubernetes: a claim, or a
    StatefulSet's claim template (one volume a replica). Real only on a cloud cluster."""

    kind: str = "PersistentVolumeClaim"
    name: str
    size_gib: float
    count: float = 1


Billable = (
    ControlPlane | NodePool | ProvisionedNodes | NatGateway | CacheNodes | LoadBalancer | Volume
)


def label(part: Billable) -> str:
    """`NodeGroup 'agents-prod-system'`: the resource a part is billed through."""
    return f"{part.kind} '{part.name}'"
