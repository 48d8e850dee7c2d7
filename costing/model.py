"""The stack's monthly cost, estimated from its resources and the shipped price table.

One model serves three readers: the `monthly-budget` policy, the program's
"estimated monthly cost" stack output, and people (`python -m policies.cost`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from components.quantity import parse_quantity
from costing.kinds import (
    AWS_LB,
    EKS_CLUSTER,
    HELM_RELEASE,
    NAT_GATEWAY,
    NODE_GROUP,
    PVC,
    REPLICATION_GROUP,
    SERVICE,
    STATEFULSET,
    ingress_nginx_service,
)
from costing.prices import PriceTable, UnknownInstanceTypeError, load_prices
from costing.view import UNKNOWN, ResourceView, dig

_NLB_TYPES = {"nlb", "nlb-ip", "external"}


@dataclass(frozen=True)
class LineItem:
    item: str
    resource: str
    unit: str
    unit_price: float
    quantity: float
    worst_quantity: float

    # Each line is billed to the cent, so totals do not depend on summation order.
    @property
    def monthly(self) -> float:
        return round(self.unit_price * self.quantity, 2)

    @property
    def worst_monthly(self) -> float:
        return round(self.unit_price * self.worst_quantity, 2)

    def line(self) -> str:
        worst = (
            f" (worst case {_num(self.worst_quantity)} = ${self.worst_monthly:,.2f})"
            if self.worst_quantity != self.quantity
            else ""
        )
        return (
            f"{self.item}: {_num(self.quantity)} {self.unit} x ${self.unit_price:,.2f} = "
            f"${self.monthly:,.2f}{worst}"
        )


@dataclass(frozen=True)
class CostProblem:
    """A resource the model cannot price; never silently $0."""

    resource: ResourceView
    message: str


@dataclass(frozen=True)
class CostEstimate:
    items: list[LineItem]
    problems: list[CostProblem]
    region: str
    source: str
    read_on: str
    assumptions: list[str] = field(default_factory=list)

    @property
    def expected_total(self) -> float:
        return round(sum(i.monthly for i in self.items), 2)

    @property
    def worst_total(self) -> float:
        return round(sum(i.worst_monthly for i in self.items), 2)

    def breakdown(self) -> str:
        return "\n".join(f"  - {i.line()}" for i in self.items) or "  (no priced resources)"

    def table(self) -> str:
        header = ("Item", "Quantity", "Unit price", "Monthly", "Worst case")
        rows = [
            (
                i.item,
                f"{_num(i.quantity)} {i.unit}",
                f"${i.unit_price:,.2f}",
                f"${i.monthly:,.2f}",
                f"${i.worst_monthly:,.2f}",
            )
            for i in self.items
        ]
        rows.append(("TOTAL", "", "", f"${self.expected_total:,.2f}", f"${self.worst_total:,.2f}"))
        widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]

        def fmt(row: Sequence[str]) -> str:
            cells = [row[0].ljust(widths[0])] + [
                v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True)
            ]
            return "  ".join(cells).rstrip()

        rule = "-" * len(fmt(header))
        lines = [fmt(header), rule, *(fmt(r) for r in rows[:-1]), rule, fmt(rows[-1])]
        if not self.items:
            lines.insert(2, "(no cloud resources to price)")
        lines += ["", f"Prices: {self.source}, {self.region}, read on {self.read_on}."]
        lines += [f"Assumes: {a}" for a in self.assumptions]
        lines += [f"NOT PRICED: {p.resource.label}: {p.message}" for p in self.problems]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "source": self.source,
            "read_on": self.read_on,
            "expected_monthly_usd": round(self.expected_total, 2),
            "worst_case_monthly_usd": round(self.worst_total, 2),
            "items": [
                {
                    **asdict(i),
                    "monthly": round(i.monthly, 2),
                    "worst_monthly": round(i.worst_monthly, 2),
                }
                for i in self.items
            ],
            "problems": [
                {"resource": p.resource.label, "message": p.message} for p in self.problems
            ],
            "assumptions": self.assumptions,
        }


def _num(value: float) -> str:
    return f"{value:g}"


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
    return _Estimator(prices or load_prices(), views).run()


class _Estimator:
    def __init__(self, prices: PriceTable, resources: list[ResourceView]) -> None:
        self.prices = prices
        self.resources = resources
        self.hours = prices.hours_per_month
        self.items: list[LineItem] = []
        self.problems: list[CostProblem] = []
        # Kubernetes objects only cost cloud money on a cloud cluster.
        self.on_cloud = any(r.type == EKS_CLUSTER for r in resources)

    def run(self) -> CostEstimate:
        for resource in self.resources:
            self._price(resource)
        p = self.prices
        # Registration order varies between runs; a stable order keeps reports diffable.
        return CostEstimate(
            sorted(self.items, key=lambda i: (i.item, i.resource)),
            self.problems,
            p.region,
            p.source,
            p.read_on,
            [
                f"{p.hours_per_month:g} hours a month; on-demand list prices",
                f"SPOT nodes at {p.spot_discount:.0%} off on-demand",
                f"{p.nat_gateway_assumed_gb_per_month:g} GB a month through each NAT gateway",
                "load balancers' hourly charge only (no LCU)",
                "persistent volumes as EBS gp3",
                "not priced: node root volumes, data transfer, CloudWatch logs, KMS, ECR",
            ],
        )

    def _add(
        self,
        item: str,
        resource: ResourceView,
        unit: str,
        price: float,
        qty: float,
        worst: float | None = None,
    ) -> None:
        self.items.append(
            LineItem(item, resource.label, unit, price, qty, qty if worst is None else worst)
        )

    def _problem(self, resource: ResourceView, message: str) -> None:
        self.problems.append(CostProblem(resource, message))

    def _price(self, r: ResourceView) -> None:
        if r.type == EKS_CLUSTER:
            self._add(
                f"EKS control plane '{r.display_name}'",
                r,
                "cluster",
                self.prices.eks_control_plane_hourly * self.hours,
                1,
            )
        elif r.type == NODE_GROUP:
            self._node_group(r)
        elif r.type == REPLICATION_GROUP:
            self._replication_group(r)
        elif r.type == NAT_GATEWAY:
            p = self.prices
            monthly = (
                p.nat_gateway_hourly * self.hours
                + p.nat_gateway_per_gb * p.nat_gateway_assumed_gb_per_month
            )
            self._add(f"NAT gateway '{r.display_name}'", r, "gateway", monthly, 1)
        elif r.type == AWS_LB:
            kind = r.get("loadBalancerType")
            kind = kind if isinstance(kind, str) else "application"
            self._load_balancer(r, kind)
        elif self.on_cloud and r.type == SERVICE and r.get("spec", "type") == "LoadBalancer":
            self._load_balancer(r, self._service_lb_kind(r.get("metadata", "annotations")))
        elif self.on_cloud and r.type == HELM_RELEASE:
            service = ingress_nginx_service(r)
            if service is not None and service[0] == "LoadBalancer":
                self._load_balancer(r, self._service_lb_kind(service[1]))
        elif self.on_cloud and r.type == PVC:
            self._volume(
                r,
                r.get("spec", "resources", "requests", "storage"),
                1,
                "spec.resources.requests.storage",
            )
        elif self.on_cloud and r.type == STATEFULSET:
            self._statefulset_volumes(r)

    def _node_group(self, r: ResourceView) -> None:
        types = r.get("instanceTypes")
        scaling = r.get("scalingConfig")
        desired, maximum = dig(scaling, "desiredSize"), dig(scaling, "maxSize")
        if types is UNKNOWN or not isinstance(types, list) or not types:
            self._problem(r, "instanceTypes is unknown or empty; set instanceTypes.")
            return
        if not isinstance(desired, int | float) or not isinstance(maximum, int | float):
            self._problem(r, "scalingConfig.desiredSize/maxSize unknown; set them from config.")
            return
        try:
            # Several types: price at the dearest, which the pool may end up on.
            hourly = max(self.prices.hourly(t) for t in types)
        except UnknownInstanceTypeError as exc:
            self._problem(
                r,
                f"instanceTypes has {exc.instance_type!r}, which the price table "
                f"({self.prices.region}, read on {self.prices.read_on}) does not list; add its "
                "hourly price to costing/data/aws-prices-us-east-1.json.",
            )
            return
        capacity = r.get("capacityType")
        spot = capacity == "SPOT"
        if spot:
            hourly *= 1 - self.prices.spot_discount
        label = (
            f"Node group '{r.display_name}' ({'/'.join(types)}, {'SPOT' if spot else 'ON_DEMAND'})"
        )
        self._add(label, r, "nodes", hourly * self.hours, float(desired), float(maximum))

    def _replication_group(self, r: ResourceView) -> None:
        node_type = r.get("nodeType")
        nodes = r.get("numCacheClusters")
        if nodes is None:
            groups, replicas = r.get("numNodeGroups"), r.get("replicasPerNodeGroup")
            if isinstance(groups, int) and isinstance(replicas, int):
                nodes = groups * (replicas + 1)
            else:
                nodes = 1
        if not isinstance(node_type, str) or node_type not in self.prices.elasticache_hourly:
            self._problem(
                r,
                f"nodeType {node_type!r} is not in the price table; add it to "
                "costing/data/aws-prices-us-east-1.json.",
            )
            return
        if not isinstance(nodes, int | float):
            self._problem(r, "numCacheClusters unknown at preview; set it from config.")
            return
        hourly = self.prices.elasticache_hourly[node_type]
        self._add(
            f"ElastiCache '{r.display_name}' ({node_type})",
            r,
            "nodes",
            hourly * self.hours,
            float(nodes),
        )

    @staticmethod
    def _service_lb_kind(annotations: Any) -> str:
        kind = dig(annotations, "service.beta.kubernetes.io/aws-load-balancer-type")
        return "network" if isinstance(kind, str) and kind in _NLB_TYPES else "classic"

    def _load_balancer(self, r: ResourceView, kind: str) -> None:
        hourly = self.prices.load_balancer_hourly.get(kind)
        if hourly is None:
            self._problem(r, f"load balancer type {kind!r} is not in the price table.")
            return
        self._add(f"Load balancer '{r.display_name}' ({kind})", r, "LB", hourly * self.hours, 1)

    def _volume(self, r: ResourceView, size: Any, count: float, path: str) -> None:
        if size is UNKNOWN or size is None:
            self._problem(r, f"{path} is unknown or missing; set the volume size.")
            return
        try:
            gib = float(parse_quantity(size) / Decimal(2**30))
        except (ValueError, TypeError):
            self._problem(r, f"{path} {size!r} is not a Kubernetes quantity.")
            return
        price = self.prices.ebs_gp3_per_gib_month
        self._add(
            f"Volume '{r.display_name}' ({_num(gib)} GiB gp3)", r, "volumes", price * gib, count
        )

    def _statefulset_volumes(self, r: ResourceView) -> None:
        templates = r.get("spec", "volumeClaimTemplates")
        replicas = r.get("spec", "replicas")
        count = float(replicas) if isinstance(replicas, int | float) else 1.0
        for index, template in enumerate(templates if isinstance(templates, list) else []):
            name = dig(template, "metadata", "name")
            view = ResourceView(
                r.type,
                f"{r.display_name}/{name}",
                r.urn,
                {"metadata": {"name": f"{r.display_name}/{name}"}},
            )
            path = f"spec.volumeClaimTemplates[{index}].spec.resources.requests.storage"
            self._volume(
                view, dig(template, "spec", "resources", "requests", "storage"), count, path
            )
