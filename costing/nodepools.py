"""Karpenter NodePools as the cost model and the GPU-capacity rule read them, and the
GPU demand of the workloads they serve.

A NodePool has no size: Karpenter launches nodes for pending pods until the NodePool's
`spec.limits` would be exceeded (it leaves out instance types that would cross them).
Its worst case is therefore the most nodes the limits admit, of the instance type that
costs most at that count, among the types its requirements allow; its expected size is
the nodes the GPU workloads need at rest. Only types the platform knows (the GPU
catalogue) can be counted: a requirement naming another family or type is an error,
never a node without GPUs or a $0 line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from components.gpu_instances import GPU, GPU_INSTANCE_TYPES, family
from components.quantity import parse_quantity
from costing.view import UNKNOWN, ResourceView, dig

NODE_POOL: Final = "kubernetes:karpenter.sh/v1:NodePool"
SCALED_OBJECT: Final = "kubernetes:keda.sh/v1alpha1:ScaledObject"
HPA: Final = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
INSTANCE_TYPE: Final = "node.kubernetes.io/instance-type"
INSTANCE_FAMILY: Final = "karpenter.k8s.aws/instance-family"
CAPACITY_TYPE: Final = "karpenter.sh/capacity-type"
_REQUIREMENTS = "spec.template.spec.requirements"
_GPU_WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet")


class NodePoolError(ValueError):
    """What keeps a NodePool from being counted or priced, as the fix to make."""


@dataclass(frozen=True)
class NodePoolReading:
    instance_types: tuple[str, ...]
    spot: bool
    limits: tuple[tuple[str, float], ...]


def _values(requirement: Any, key: str) -> list[str]:
    operator, values = dig(requirement, "operator"), dig(requirement, "values")
    if operator is UNKNOWN or values is UNKNOWN:
        raise NodePoolError(f"{_REQUIREMENTS} on {key} is unknown at preview; set it from config.")
    if operator != "In" or not isinstance(values, list) or not values:
        raise NodePoolError(
            f"{_REQUIREMENTS} on {key} must be `In` a non-empty list (got {operator!r}), so "
            "that the types it admits can be counted."
        )
    return [str(v) for v in values]


def read_node_pool(pool: ResourceView) -> NodePoolReading:
    """The instance types a NodePool admits, whether it is SPOT only, and its limits."""
    requirements = pool.get("spec", "template", "spec", "requirements")
    if requirements is UNKNOWN:
        raise NodePoolError(f"{_REQUIREMENTS} is unknown at preview; set it from config.")
    types: set[str] | None = None
    capacity_types = ["on-demand"]
    for requirement in requirements if isinstance(requirements, list) else []:
        key = dig(requirement, "key")
        if key == INSTANCE_TYPE:
            named = _values(requirement, key)
            unknown = [t for t in named if t not in GPU_INSTANCE_TYPES]
            if unknown:
                raise NodePoolError(
                    f"{_REQUIREMENTS} admits instance type(s) {unknown} that the platform's "
                    "GPU catalogue (components/gpu_instances.py) does not list, so their "
                    "GPUs and price cannot be counted."
                )
            types = set(named) if types is None else types & set(named)
        elif key == INSTANCE_FAMILY:
            families = _values(requirement, key)
            known = {family(t) for t in GPU_INSTANCE_TYPES}
            unknown = [f for f in families if f not in known]
            if unknown:
                raise NodePoolError(
                    f"{_REQUIREMENTS} admits instance family(ies) {unknown} that the "
                    "platform's GPU catalogue (components/gpu_instances.py) does not list, so "
                    "their GPUs and price cannot be counted."
                )
            in_families = {t for t in GPU_INSTANCE_TYPES if family(t) in families}
            types = in_families if types is None else types & in_families
        elif key == CAPACITY_TYPE:
            capacity_types = _values(requirement, key)
    if types is None:
        raise NodePoolError(
            f"{_REQUIREMENTS} names no {INSTANCE_FAMILY} or {INSTANCE_TYPE}: Karpenter may "
            "launch any instance type, whose GPUs and price cannot be bounded."
        )
    if not types:
        raise NodePoolError(f"{_REQUIREMENTS} admits no instance type at all.")
    return NodePoolReading(
        instance_types=tuple(sorted(types)),
        # Priced as SPOT only when it cannot fall back to on-demand.
        spot="on-demand" not in capacity_types,
        limits=read_limits(pool),
    )


def read_limits(pool: ResourceView) -> tuple[tuple[str, float], ...]:
    limits = pool.get("spec", "limits")
    if limits is UNKNOWN:
        raise NodePoolError("spec.limits is unknown at preview; set it from config.")
    if not isinstance(limits, dict) or not limits:
        raise NodePoolError(
            "spec.limits is missing: the NodePool may grow without end; set limits on "
            f"{GPU} and cpu from the stack's GPU caps."
        )
    read: list[tuple[str, float]] = []
    for resource, value in sorted(limits.items()):
        if value is UNKNOWN:
            raise NodePoolError(f"spec.limits.{resource} is unknown at preview.")
        try:
            read.append((resource, float(parse_quantity(value))))
        except (ValueError, TypeError):
            raise NodePoolError(
                f"spec.limits.{resource} {value!r} is not a Kubernetes quantity."
            ) from None
    return tuple(read)


def _gpus_per_pod(workload: ResourceView) -> float:
    pod = workload.get("spec", "template", "spec")
    total = Decimal(0)
    # Only known containers count: an unknown one lowers the expected size at preview,
    # never the worst case, which the NodePool's limits fix.
    found = [dig(pod, "containers"), dig(pod, "initContainers")]
    for container in [c for listed in found if isinstance(listed, list) for c in listed]:
        value = dig(container, "resources", "limits", GPU)
        if value is None or value is UNKNOWN:
            value = dig(container, "resources", "requests", GPU)
        if value is not None and value is not UNKNOWN:
            total += parse_quantity(value)
    return float(total)


@dataclass(frozen=True)
class ScaledWorkload:
    """A Deployment or StatefulSet at the bounds of what scales it, with what one pod
    requests (CPU in cores, memory in GiB) and the GPUs it holds."""

    label: str
    at_rest: float
    at_max: float
    cpu: float
    memory_gib: float
    gpus: float

    def line(self) -> str:
        def n(value: float) -> str:
            return f"{value:g}"

        gpus = f", {n(self.gpus * self.at_max)} GPU(s)" if self.gpus else ""
        return (
            f"{self.label} at max {n(self.at_max)} replicas (at rest {n(self.at_rest)}): "
            f"{n(self.cpu * self.at_max)} vCPU, {n(round(self.memory_gib * self.at_max, 2))} GiB"
            f" requested{gpus}"
        )


# Each autoscaler's (min field, default, max field, default), as its API applies them.
_AUTOSCALERS = {
    SCALED_OBJECT: ("minReplicaCount", 0, "maxReplicaCount", 100),
    HPA: ("minReplicas", 1, "maxReplicas", None),
}


def _requested(pod: Any, resource: str) -> float:
    total = Decimal(0)
    for container in dig(pod, "containers") or []:
        value = dig(container, "resources", "requests", resource)
        if value is not None and value is not UNKNOWN:
            total += parse_quantity(value)
    return float(total)


def scaled_workloads(views: Iterable[ResourceView]) -> list[ScaledWorkload]:
    """The workloads an autoscaler scales, and those that hold GPUs, at rest and at the
    autoscaler's maximum (a fixed workload at its `spec.replicas`, default 1)."""
    views = list(views)
    bounds: dict[tuple[Any, Any], tuple[Any, Any]] = {}
    for v in views:
        if v.type in _AUTOSCALERS:
            low_field, low_default, high_field, high_default = _AUTOSCALERS[v.type]
            low, high = v.get("spec", low_field), v.get("spec", high_field)
            bounds[(v.namespace, v.get("spec", "scaleTargetRef", "name"))] = (
                low_default if low is None else low,
                high_default if high is None else high,
            )
    found = []
    for view in views:
        if view.type not in _GPU_WORKLOADS:
            continue
        key = (view.namespace, view.display_name)
        gpus = _gpus_per_pod(view)
        if key not in bounds and not gpus:
            continue
        replicas = view.get("spec", "replicas")
        fixed = 1 if replicas is None else replicas
        low, high = bounds.get(key, (fixed, fixed))
        if not all(isinstance(b, int | float) for b in (low, high)):
            continue  # unknown at preview; the autoscaler-bounds rule reports it
        pod = view.get("spec", "template", "spec")
        found.append(
            ScaledWorkload(
                label=view.label,
                at_rest=float(low),
                at_max=float(high),
                cpu=_requested(pod, "cpu"),
                memory_gib=_requested(pod, "memory") / 2**30,
                gpus=gpus,
            )
        )
    return found


def gpu_demand_at_max(views: Iterable[ResourceView]) -> float:
    """GPUs the workloads hold with every autoscaler at its maximum."""
    return sum(w.gpus * w.at_max for w in scaled_workloads(views))


def gpu_demand_at_rest(views: Iterable[ResourceView]) -> float:
    """GPUs the workloads hold when idle: each GPU Deployment or StatefulSet at the
    minimum of what scales it (KEDA's default minimum is 0), else at its `spec.replicas`
    (default 1)."""
    return sum(w.gpus * w.at_rest for w in scaled_workloads(views))
