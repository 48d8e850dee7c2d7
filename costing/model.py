"""The stack's monthly cost, read from its resources' properties and priced.

The `monthly-budget` policy and the cost command (`python -m policies.cost`) price the
resources a stack registers: this module reads each one's wire-form properties into the
billable parts `costing.pricing` prices, the same parts the program's components declare
for its "estimated monthly cost" output. A value unknown at preview, or missing, is a
problem naming the property, never $0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from components.billing import (
    Billable,
    CacheNodes,
    ControlPlane,
    LoadBalancer,
    NatGateway,
    NodePool,
    ProvisionedNodes,
    Volume,
)
from components.quantity import parse_quantity
from costing.kinds import (
    AWS_LB,
    EKS_CLUSTER,
    ENVOY_PROXY,
    NAT_GATEWAY,
    NODE_GROUP,
    PVC,
    REPLICATION_GROUP,
    SERVICE,
    STATEFULSET,
    envoy_proxy_service,
)
from costing.nodepools import NODE_POOL, NodePoolError, gpu_demand_at_rest, read_node_pool
from costing.prices import PriceTable, load_prices
from costing.pricing import CostEstimate, Pricer, unlisted_node_type
from costing.view import UNKNOWN, ResourceView, dig

_NLB_TYPES = {"nlb", "nlb-ip", "external"}


def _name_of(resource_type: str, props: Mapping[str, Any]) -> str:
    for keys in (("metadata", "name"), ("nodeGroupName",), ("name",), ("replicationGroupId",)):
        value = dig(dict(props), *keys)
        if isinstance(value, str):
            return value
    return resource_type.rsplit(":", 1)[-1]


def estimate(
    resources: Iterable[ResourceView | tuple[str, Mapping[str, Any]]],
    prices: PriceTable | None = None,
) -> CostEstimate:
    """Estimate the monthly USD cost of resources given as views or (type, wire props)."""
    views = [
        r if isinstance(r, ResourceView) else ResourceView.of(r[0], _name_of(*r), "", r[1])
        for r in resources
    ]
    pricer = Pricer(prices or load_prices(), on_cloud=any(v.type == EKS_CLUSTER for v in views))
    # The GPU workloads' demand at rest is held by the Karpenter NodePool Karpenter tries
    # first (highest spec.weight, then name), as the program declares it.
    preferred = _preferred_node_pool(views)
    demand = gpu_demand_at_rest(views) if preferred else 0.0
    for view in views:
        reader = _Reader(view, pricer, demand if view is preferred else 0.0)
        for part in reader.parts():
            pricer.add(part, view.urn)
    return pricer.estimate()


def _preferred_node_pool(views: list[ResourceView]) -> ResourceView | None:
    def order(pool: ResourceView) -> tuple[float, str]:
        weight = pool.get("spec", "weight")
        return (-weight if isinstance(weight, int | float) else 0, pool.display_name)

    return min((v for v in views if v.type == NODE_POOL), key=order, default=None)


class _Reader:
    """One resource's billable parts; what it cannot read is a problem on the pricer."""

    def __init__(self, view: ResourceView, pricer: Pricer, gpu_demand: float = 0.0) -> None:
        self.r = view
        self.pricer = pricer
        self.gpu_demand = gpu_demand

    def _problem(self, message: str, resource: str | None = None) -> list[Billable]:
        self.pricer.problem(resource or self.r.label, message, self.r.urn)
        return []

    def parts(self) -> list[Billable]:
        r, on_cloud = self.r, self.pricer.on_cloud
        if r.type == EKS_CLUSTER:
            return [ControlPlane(name=r.display_name)]
        if r.type == NODE_GROUP:
            return self._node_group()
        if r.type == REPLICATION_GROUP:
            return self._replication_group()
        if r.type == NAT_GATEWAY:
            return [NatGateway(name=r.display_name)]
        if r.type == AWS_LB:
            kind = r.get("loadBalancerType")
            kind = kind if isinstance(kind, str) else "application"
            return [self._load_balancer(kind, in_cluster=False)]
        # Kubernetes objects only cost cloud money on a cloud cluster: elsewhere they are
        # not read at all, so an unknown size there is no problem either.
        return self._cluster_object() if on_cloud else []

    def _cluster_object(self) -> list[Billable]:
        r = self.r
        if r.type == SERVICE and r.get("spec", "type") == "LoadBalancer":
            annotations = r.get("metadata", "annotations")
            return [self._load_balancer(_service_lb_type(annotations), in_cluster=True)]
        if r.type == ENVOY_PROXY:
            lb_type, annotations = envoy_proxy_service(r)
            if lb_type == "LoadBalancer":
                return [self._load_balancer(_service_lb_type(annotations), in_cluster=True)]
            return []
        if r.type == NODE_POOL:
            return self._node_pool_provisioned()
        if r.type == PVC:
            size = r.get("spec", "resources", "requests", "storage")
            return self._volume(r.kind, r.display_name, size, 1, "spec.resources.requests.storage")
        if r.type == STATEFULSET:
            return self._statefulset_volumes()
        return []

    def _node_group(self) -> list[Billable]:
        r = self.r
        types = r.get("instanceTypes")
        scaling = r.get("scalingConfig")
        desired, maximum = dig(scaling, "desiredSize"), dig(scaling, "maxSize")
        if types is UNKNOWN or not isinstance(types, list) or not types:
            return self._problem("instanceTypes is unknown or empty; set instanceTypes.")
        if not isinstance(desired, int | float) or not isinstance(maximum, int | float):
            return self._problem("scalingConfig.desiredSize/maxSize unknown; set them from config.")
        return [
            NodePool(
                name=r.display_name,
                instance_types=tuple(types),
                spot=r.get("capacityType") == "SPOT",
                desired=float(desired),
                maximum=float(maximum),
            )
        ]

    def _node_pool_provisioned(self) -> list[Billable]:
        try:
            pool = read_node_pool(self.r)
        except NodePoolError as error:
            return self._problem(str(error))
        return [
            ProvisionedNodes(
                name=self.r.display_name,
                instance_types=pool.instance_types,
                spot=pool.spot,
                limits=pool.limits,
                expected_gpus=self.gpu_demand,
            )
        ]

    def _replication_group(self) -> list[Billable]:
        r = self.r
        node_type = r.get("nodeType")
        nodes = r.get("numCacheClusters")
        if nodes is None:
            groups, replicas = r.get("numNodeGroups"), r.get("replicasPerNodeGroup")
            if isinstance(groups, int) and isinstance(replicas, int):
                nodes = groups * (replicas + 1)
            else:
                nodes = 1
        # The node type first, as the message about it is the one to act on.
        if not isinstance(node_type, str) or node_type not in self.pricer.prices.elasticache_hourly:
            return self._problem(unlisted_node_type(node_type))
        if not isinstance(nodes, int | float):
            return self._problem("numCacheClusters unknown at preview; set it from config.")
        return [CacheNodes(name=r.display_name, node_type=node_type, nodes=float(nodes))]

    def _load_balancer(self, type_: str, *, in_cluster: bool) -> LoadBalancer:
        r = self.r
        return LoadBalancer(kind=r.kind, name=r.display_name, type=type_, in_cluster=in_cluster)

    def _volume(self, kind: str, name: str, size: Any, count: float, path: str) -> list[Billable]:
        resource = f"{kind} '{name}'"
        if size is UNKNOWN or size is None:
            return self._problem(f"{path} is unknown or missing; set the volume size.", resource)
        try:
            gib = float(parse_quantity(size) / Decimal(2**30))
        except (ValueError, TypeError):
            return self._problem(f"{path} {size!r} is not a Kubernetes quantity.", resource)
        return [Volume(kind=kind, name=name, size_gib=gib, count=count)]

    def _statefulset_volumes(self) -> list[Billable]:
        r = self.r
        templates = r.get("spec", "volumeClaimTemplates")
        replicas = r.get("spec", "replicas")
        count = float(replicas) if isinstance(replicas, int | float) else 1.0
        parts: list[Billable] = []
        for index, template in enumerate(templates if isinstance(templates, list) else []):
            size = dig(template, "spec", "resources", "requests", "storage")
            path = f"spec.volumeClaimTemplates[{index}].spec.resources.requests.storage"
            name = f"{r.display_name}/{dig(template, 'metadata', 'name')}"
            parts += self._volume(r.kind, name, size, count, path)
        return parts


def _service_lb_type(annotations: Any) -> str:
    kind = dig(annotations, "service.beta.kubernetes.io/aws-load-balancer-type")
    return "network" if isinstance(kind, str) and kind in _NLB_TYPES else "classic"
