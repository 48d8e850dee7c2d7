"""The price of a stack's billable parts: line items, totals and what could not be priced.

The program prices the parts its components declare (`components/billing.py`); the pack
and the cost command price the parts `costing.model` reads out of resource properties.
One pricing, so the stack output, the budget rule and the cost table agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
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
    label,
)
from components.gpu_instances import nodes_at_limits, nodes_for_gpus
from costing.prices import PriceTable, UnknownInstanceTypeError, load_prices


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

    resource: str
    message: str
    # Where the resource is known (the pack reads registered resources), its URN.
    urn: str = ""


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
        lines += [f"NOT PRICED: {p.resource}: {p.message}" for p in self.problems]
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
            "problems": [{"resource": p.resource, "message": p.message} for p in self.problems],
            "assumptions": self.assumptions,
        }


def _num(value: float) -> str:
    return f"{value:g}"


def price(parts: Iterable[Billable], prices: PriceTable | None = None) -> CostEstimate:
    """The monthly USD cost of the parts a stack's components declare."""
    parts = list(parts)
    pricer = Pricer(
        prices or load_prices(), on_cloud=any(isinstance(p, ControlPlane) for p in parts)
    )
    for part in parts:
        pricer.add(part)
    return pricer.estimate()


class Pricer:
    """Line items for parts added one at a time, and the problems met on the way, in
    the order they came (`costing.model` adds the problems of its reading)."""

    def __init__(self, prices: PriceTable, *, on_cloud: bool) -> None:
        self.prices = prices
        self.hours = prices.hours_per_month
        # Kubernetes objects only cost cloud money on a cloud cluster.
        self.on_cloud = on_cloud
        self.items: list[LineItem] = []
        self.problems: list[CostProblem] = []

    def problem(self, resource: str, message: str, urn: str = "") -> None:
        self.problems.append(CostProblem(resource, message, urn))

    def add(self, part: Billable, urn: str = "") -> None:
        if isinstance(part, ControlPlane):
            monthly = self.prices.eks_control_plane_hourly * self.hours
            self._item(f"EKS control plane '{part.name}'", part, "cluster", monthly, 1)
        elif isinstance(part, NodePool):
            self._node_pool(part, urn)
        elif isinstance(part, ProvisionedNodes):
            self._provisioned_nodes(part, urn)
        elif isinstance(part, NatGateway):
            p = self.prices
            monthly = (
                p.nat_gateway_hourly * self.hours
                + p.nat_gateway_per_gb * p.nat_gateway_assumed_gb_per_month
            )
            self._item(f"NAT gateway '{part.name}'", part, "gateway", monthly, 1)
        elif isinstance(part, CacheNodes):
            self._cache_nodes(part, urn)
        elif isinstance(part, LoadBalancer):
            if self.on_cloud or not part.in_cluster:
                self._load_balancer(part, urn)
        elif isinstance(part, Volume) and self.on_cloud:
            self._volume(part)

    def estimate(self) -> CostEstimate:
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
                "not priced: node root volumes, data transfer, CloudWatch logs (control plane, "
                "VPC flow logs), KMS keys, ECR",
            ],
        )

    def _item(
        self,
        item: str,
        part: Billable,
        unit: str,
        unit_price: float,
        quantity: float,
        worst: float | None = None,
    ) -> None:
        self.items.append(
            LineItem(
                item, label(part), unit, unit_price, quantity, quantity if worst is None else worst
            )
        )

    def _node_pool(self, part: NodePool, urn: str) -> None:
        try:
            # Several types: price at the dearest, which the pool may end up on.
            hourly = max(self.prices.hourly(t) for t in part.instance_types)
        except UnknownInstanceTypeError as exc:
            self.problem(label(part), _unlisted_instance_type(exc, self.prices), urn)
            return
        if part.spot:
            hourly *= 1 - self.prices.spot_discount
        types = "/".join(part.instance_types)
        self._item(
            f"Node group '{part.name}' ({types}, {'SPOT' if part.spot else 'ON_DEMAND'})",
            part,
            "nodes",
            hourly * self.hours,
            part.desired,
            part.maximum,
        )

    def _provisioned_nodes(self, part: ProvisionedNodes, urn: str) -> None:
        """A Karpenter NodePool at its limits, of the admitted type that costs most there;
        expected: the nodes of that type the GPU workloads hold at rest."""
        try:
            hourly = {t: self.prices.hourly(t) for t in part.instance_types}
        except UnknownInstanceTypeError as exc:
            self.problem(label(part), _unlisted_instance_type(exc, self.prices), urn)
            return
        at_limits = {t: nodes_at_limits(t, part.limits) for t in part.instance_types}
        bounded = {t: n for t, n in at_limits.items() if n is not None}
        if len(bounded) < len(at_limits):
            self.problem(
                label(part),
                "spec.limits bounds no resource its instance types carry, so it may grow "
                "without end; set limits on nvidia.com/gpu and cpu.",
                urn,
            )
            return
        dearest = max(part.instance_types, key=lambda t: (bounded[t] * hourly[t], hourly[t]))
        unit = hourly[dearest] * (1 - self.prices.spot_discount if part.spot else 1)
        worst = bounded[dearest]
        expected = min(nodes_for_gpus(dearest, part.expected_gpus), worst)
        limits = ", ".join(f"{r}={_num(v)}" for r, v in part.limits)
        self._item(
            f"Karpenter NodePool '{part.name}' ({dearest} at limits {limits}, "
            f"{'SPOT' if part.spot else 'ON_DEMAND'})",
            part,
            "nodes",
            unit * self.hours,
            float(expected),
            float(worst),
        )

    def _cache_nodes(self, part: CacheNodes, urn: str) -> None:
        hourly = self.prices.elasticache_hourly.get(part.node_type)
        if hourly is None:
            self.problem(label(part), unlisted_node_type(part.node_type), urn)
            return
        self._item(
            f"ElastiCache '{part.name}' ({part.node_type})",
            part,
            "nodes",
            hourly * self.hours,
            part.nodes,
        )

    def _load_balancer(self, part: LoadBalancer, urn: str) -> None:
        hourly = self.prices.load_balancer_hourly.get(part.type)
        if hourly is None:
            self.problem(
                label(part), f"load balancer type {part.type!r} is not in the price table.", urn
            )
            return
        self._item(f"Load balancer '{part.name}' ({part.type})", part, "LB", hourly * self.hours, 1)

    def _volume(self, part: Volume) -> None:
        self._item(
            f"Volume '{part.name}' ({_num(part.size_gib)} GiB gp3)",
            part,
            "volumes",
            self.prices.ebs_gp3_per_gib_month * part.size_gib,
            part.count,
        )


def _unlisted_instance_type(exc: UnknownInstanceTypeError, prices: PriceTable) -> str:
    return (
        f"instanceTypes has {exc.instance_type!r}, which the price table "
        f"({prices.region}, read on {prices.read_on}) does not list; add its "
        "hourly price to costing/data/aws-prices-us-east-1.json."
    )


def unlisted_node_type(node_type: object) -> str:
    return (
        f"nodeType {node_type!r} is not in the price table; add it to "
        "costing/data/aws-prices-us-east-1.json."
    )
