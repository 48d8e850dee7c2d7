"""The local control plane's node pools: Node objects that KWOK keeps Ready, so the real
scheduler places the stack's pods on the pools the stack declares, by the same labels,
taints, zones and capacity (GPUs included) as its EKS node groups would have.

No kubelet runs: a node reports the capacity its `kwok.agent-platform.io/capacity`
annotation states (tools/cluster/kwok/stages/node-from-annotations.yaml), and its pods
turn Running without a container.
"""

from __future__ import annotations

import json
from typing import Literal

import pulumi
from pulumi_kubernetes.core.v1 import Node, NodeSpecArgs, TaintArgs
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pydantic import Field

from components.kube import child_options
from components.values import ArgsModel, PositiveInt, Quantity

ZONE_LABEL = "topology.kubernetes.io/zone"
POOL_LABEL = "agent-platform.io/node-pool"
# KWOK manages only the nodes that carry this annotation (scripts/local-cluster).
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
CAPACITY_ANNOTATION = "kwok.agent-platform.io/capacity"


class Taint(ArgsModel):
    key: str
    value: str
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class SimulatedPool(ArgsModel):
    """`count` nodes, spread round-robin over `zones`, each with this capacity."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    count: PositiveInt
    zones: list[str] = Field(min_length=1)
    capacity: dict[str, Quantity]
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)


class SimulatedNodesArgs(ArgsModel):
    pools: list[SimulatedPool] = Field(min_length=1)
    provider: pulumi.ProviderResource


class SimulatedNodes(pulumi.ComponentResource):
    """Exposes `node_names`: every node, pool by pool."""

    node_names: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: SimulatedNodesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:cluster:SimulatedNodes", name, None, opts)
        child = child_options(self, opts, provider=args.provider)
        nodes: list[Node] = []
        for pool in args.pools:
            for index in range(pool.count):
                node_name = f"{pool.name}-{index}"
                nodes.append(
                    Node(
                        node_name,
                        metadata=ObjectMetaArgs(
                            name=node_name,
                            # A pool's own labels win: a GPU pool's say `gpu`, as on EKS.
                            labels={
                                POOL_LABEL: pool.name,
                                **pool.labels,
                                ZONE_LABEL: pool.zones[index % len(pool.zones)],
                                "kubernetes.io/hostname": node_name,
                            },
                            annotations={
                                KWOK_ANNOTATION: "fake",
                                CAPACITY_ANNOTATION: json.dumps(pool.capacity, sort_keys=True),
                            },
                        ),
                        spec=NodeSpecArgs(
                            taints=[
                                TaintArgs(key=t.key, value=t.value, effect=t.effect)
                                for t in pool.taints
                            ]
                        ),
                        opts=child,
                    )
                )
        self.node_names = pulumi.Output.all(*(node.metadata.name for node in nodes))
        self.register_outputs({"nodeNames": self.node_names})
