"""GPU scheduling: GPUs are limits-only, GPU pods land on GPU nodes, others stay off them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator

from components.gpu_instances import GPU_INSTANCE_TYPES, nodes_at_limits
from components.quantity import parse_quantity
from costing.kinds import NODE_GROUP
from costing.nodepools import (
    NODE_POOL,
    NodePoolError,
    read_node_pool,
    scaled_workloads,
)
from costing.prices import PriceTable, UnknownInstanceTypeError, load_prices
from costing.view import UNKNOWN, ResourceView, dig, name_matches
from policies.rule import Count, ResourceRule, Rule, RuleConfig, StackRule
from policies.violation import Violation, undetermined, violation
from policies.workloads import (
    containers,
    containers_unknown,
    is_pod_bearing,
    pod_spec,
    pod_spec_path,
)

LIMITS_ONLY = "gpu-limits-only"
PLACEMENT = "gpu-pods-on-gpu-nodes"
TAINT_RESERVED = "gpu-taint-reserved"
POOL_CAP = "gpu-node-pool-capacity"


class GpuResourceConfig(RuleConfig):
    gpu_resource: str = "nvidia.com/gpu"


class GpuTaintConfig(GpuResourceConfig):
    taint_key: str = "nvidia.com/gpu"
    taint_value: str = "true"
    taint_effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class GpuPlacementConfig(GpuTaintConfig):
    # Node labels that mark GPU nodes, each with the pattern its value must match: the
    # project's pool label, NVIDIA GPU feature discovery's, and Karpenter's GPU count.
    gpu_node_labels: dict[str, str] = Field(
        default_factory=lambda: {
            "agent-platform.io/node-pool": "gpu",
            "nvidia.com/gpu.present": "true",
            "karpenter.k8s.aws/instance-gpu-count": "[1-9][0-9]*",
        }
    )

    @field_validator("gpu_node_labels")
    @classmethod
    def _patterns_compile(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels:
            raise ValueError("name at least one GPU node label")
        for key, pattern in labels.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{key}: invalid pattern {pattern!r} ({exc})") from None
        return labels

    def marks_gpu(self, key: Any, value: Any) -> bool:
        pattern = self.gpu_node_labels.get(key) if isinstance(key, str) else None
        return pattern is not None and isinstance(value, str) and bool(re.fullmatch(pattern, value))


class GpuTaintReservedConfig(GpuTaintConfig):
    # GPU infrastructure (device plugin, DCGM exporter) tolerates the taint without
    # requesting a GPU; these workload names (metadata.name) may.
    gpu_infrastructure: tuple[str, ...] = (
        "nvidia-device-plugin",
        "nvidia-device-plugin-*",
        "dcgm-exporter",
        "dcgm-exporter-*",
    )


def check_gpu_limits_only(resource: ResourceView, cfg: GpuResourceConfig) -> list[Violation]:
    if not is_pod_bearing(resource):
        return []
    if containers_unknown(resource):
        return [undetermined(LIMITS_ONLY, resource, "containers unknown at preview.")]
    found: list[Violation] = []
    gpu = cfg.gpu_resource
    for container in containers(resource):
        request = dig(container.spec, "resources", "requests", gpu)
        limit = dig(container.spec, "resources", "limits", gpu)
        path = f"{container.path}.resources"
        if request is None:
            continue
        if limit is None:
            found.append(
                violation(
                    LIMITS_ONLY,
                    resource,
                    f"{container.label} sets {path}.requests.{gpu} without limits.{gpu}; "
                    f"GPUs are not overcommitted: set resources.limits.{gpu} (requests may "
                    "then be dropped).",
                )
            )
        elif request is UNKNOWN or limit is UNKNOWN:
            found.append(
                undetermined(LIMITS_ONLY, resource, f"{container.label}: {path} GPU count unknown.")
            )
        elif _count(request) != _count(limit):
            found.append(
                violation(
                    LIMITS_ONLY,
                    resource,
                    f"{container.label}: {path}.requests.{gpu} {request} differs from "
                    f"limits.{gpu} {limit}; set only resources.limits.{gpu}, or make them equal.",
                )
            )
    return found


def _count(value: Any) -> int:
    """A GPU quantity as a count; wire-form numbers arrive as floats (1.0)."""
    try:
        return int(parse_quantity(value))
    except (ValueError, TypeError):
        return 1  # malformed, but asks for a GPU: still needs GPU placement


def gpu_count(resource: ResourceView, cfg: GpuResourceConfig) -> Any:
    """GPUs the pod asks for: an int, or UNKNOWN."""
    if containers_unknown(resource):
        return UNKNOWN
    total = 0
    for container in containers(resource):
        for kind in ("limits", "requests"):
            value = dig(container.spec, "resources", kind, cfg.gpu_resource)
            if value is UNKNOWN:
                return UNKNOWN
            if value is not None:
                total += _count(value)
                break
    return total


def _tolerates_gpu_taint(toleration: Any, cfg: GpuTaintConfig) -> bool:
    key = dig(toleration, "key")
    operator = dig(toleration, "operator") or "Equal"
    effect = dig(toleration, "effect")
    if effect not in (None, "", cfg.taint_effect):
        return False
    if key in (None, "") and operator == "Exists":
        return True  # tolerates every taint
    if key != cfg.taint_key:
        return False
    return operator == "Exists" or dig(toleration, "value") == cfg.taint_value


def _selects_gpu_nodes(spec: Any, cfg: GpuPlacementConfig) -> bool:
    selector = dig(spec, "nodeSelector")
    if isinstance(selector, dict) and any(cfg.marks_gpu(k, v) for k, v in selector.items()):
        return True
    terms = dig(
        spec,
        "affinity",
        "nodeAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "nodeSelectorTerms",
    )
    if not isinstance(terms, list) or not terms:
        return False
    # Terms are ORed: every one of them must pin the pod to GPU nodes.
    return all(_term_selects(term, cfg) for term in terms)


def _term_selects(term: Any, cfg: GpuPlacementConfig) -> bool:
    expressions = dig(term, "matchExpressions")
    if not isinstance(expressions, list):
        return False
    return any(_expression_selects(e, cfg) for e in expressions)


def _expression_selects(expression: Any, cfg: GpuPlacementConfig) -> bool:
    key, operator, values = (dig(expression, f) for f in ("key", "operator", "values"))
    if not isinstance(values, list) or not values:
        return False
    if operator == "In":
        return all(cfg.marks_gpu(key, v) for v in values)
    # A count label above zero (Karpenter's instance-gpu-count Gt 0).
    if operator == "Gt" and isinstance(values[0], str) and values[0].isdigit():
        return cfg.marks_gpu(key, str(int(values[0]) + 1))
    return False


def check_gpu_placement(resource: ResourceView, cfg: GpuPlacementConfig) -> list[Violation]:
    if not is_pod_bearing(resource):
        return []
    gpus = gpu_count(resource, cfg)
    if gpus is UNKNOWN:
        return [undetermined(PLACEMENT, resource, "GPU count unknown at preview.")]
    if gpus == 0:
        return []
    spec = pod_spec(resource)
    base = pod_spec_path(resource)
    found: list[Violation] = []
    tolerations = dig(spec, "tolerations")
    if tolerations is UNKNOWN:
        found.append(undetermined(PLACEMENT, resource, f"{base}.tolerations unknown at preview."))
    elif not any(_tolerates_gpu_taint(t, cfg) for t in tolerations or []):
        found.append(
            violation(
                PLACEMENT,
                resource,
                f"requests {gpus} GPU(s) but {base}.tolerations does not tolerate the GPU "
                f"taint; add {{key: {cfg.taint_key}, operator: Equal, value: "
                f"'{cfg.taint_value}', effect: {cfg.taint_effect}}}.",
            )
        )
    if dig(spec, "nodeSelector") is UNKNOWN or dig(spec, "affinity") is UNKNOWN:
        found.append(undetermined(PLACEMENT, resource, f"{base} node selection unknown."))
    elif not _selects_gpu_nodes(spec, cfg):
        found.append(
            violation(
                PLACEMENT,
                resource,
                f"requests {gpus} GPU(s) but does not select GPU nodes; set a "
                f"{base}.nodeSelector (or a required nodeAffinity term) on one of the GPU "
                f"node labels: {', '.join(f'{k}={v}' for k, v in cfg.gpu_node_labels.items())}.",
            )
        )
    return found


def check_gpu_taint_reserved(
    resource: ResourceView, cfg: GpuTaintReservedConfig
) -> list[Violation]:
    if not is_pod_bearing(resource) or name_matches(resource.display_name, cfg.gpu_infrastructure):
        return []
    tolerations = dig(pod_spec(resource), "tolerations")
    base = pod_spec_path(resource)
    if tolerations is UNKNOWN:
        return [undetermined(TAINT_RESERVED, resource, f"{base}.tolerations unknown.")]
    tolerating = [i for i, t in enumerate(tolerations or []) if _tolerates_gpu_taint(t, cfg)]
    if not tolerating:
        return []
    gpus = gpu_count(resource, cfg)
    if gpus is UNKNOWN:
        return [undetermined(TAINT_RESERVED, resource, "GPU count unknown at preview.")]
    if gpus > 0:
        return []
    return [
        violation(
            TAINT_RESERVED,
            resource,
            f"requests no GPU but {base}.tolerations[{tolerating[0]}] tolerates the GPU taint "
            f"{cfg.taint_key}={cfg.taint_value}:{cfg.taint_effect}; remove the toleration, or "
            "add the workload to gpu_infrastructure if it is GPU node infrastructure.",
        )
    ]


class GpuPoolCapConfig(RuleConfig):
    max_total_gpus: Count = 16


def _gpus_per_node(prices: PriceTable, instance_type: str) -> int:
    # The price table is the list of types the platform knows: an unlisted one raises
    # here as it does in the cost model, rather than counting as a node without GPUs.
    prices.hourly(instance_type)
    gpu = GPU_INSTANCE_TYPES.get(instance_type)
    return gpu.gpus if gpu else 0


def _node_pool_gpus(pool: ResourceView) -> tuple[int, str]:
    """The most GPUs a Karpenter NodePool's limits admit, and how they are reached;
    NodePoolError when they cannot be counted."""
    reading = read_node_pool(pool)
    prices = load_prices()
    best: tuple[int, str] = (0, "")
    for instance_type in reading.instance_types:
        try:
            prices.hourly(instance_type)
        except UnknownInstanceTypeError:
            raise NodePoolError(
                f"instance type {instance_type!r} is not in the price table; add it to "
                "costing/data/aws-prices-us-east-1.json."
            ) from None
        nodes = nodes_at_limits(instance_type, reading.limits)
        if nodes is None:
            raise NodePoolError(
                "spec.limits bounds no resource its nodes carry, so its GPUs are unbounded; "
                "set spec.limits on nvidia.com/gpu (and cpu)."
            )
        gpus = nodes * GPU_INSTANCE_TYPES[instance_type].gpus
        if gpus > best[0]:
            best = (gpus, f"{nodes} x {instance_type}")
    return best


def check_gpu_pool_capacity(
    resources: Sequence[ResourceView], cfg: GpuPoolCapConfig
) -> list[Violation]:
    prices = load_prices()
    total = 0
    pools: list[str] = []
    found: list[Violation] = []
    for pool in (r for r in resources if r.type == NODE_POOL):
        try:
            gpus, reached = _node_pool_gpus(pool)
        except NodePoolError as error:
            found.append(violation(POOL_CAP, pool, f"its GPUs cannot be counted: {error}"))
            continue
        if gpus:
            total += gpus
            pools.append(f"{pool.label} at spec.limits {reached} = {gpus}")
    for pool in (r for r in resources if r.type == NODE_GROUP):
        types = pool.get("instanceTypes")
        max_size = pool.get("scalingConfig", "maxSize")
        if types is UNKNOWN or max_size is UNKNOWN:
            found.append(
                violation(
                    POOL_CAP,
                    pool,
                    "instanceTypes or scalingConfig.maxSize is unknown at preview; the GPU "
                    "total must be known: set them from literal config.",
                )
            )
            continue
        if not isinstance(types, list) or not types:
            continue
        try:
            per_node = max(_gpus_per_node(prices, t) for t in types)
        except UnknownInstanceTypeError as exc:
            found.append(
                violation(
                    POOL_CAP,
                    pool,
                    f"instanceTypes has {exc.instance_type!r}, which the price table does not "
                    "know, so its GPUs cannot be counted; add it to "
                    "costing/data/aws-prices-us-east-1.json.",
                )
            )
            continue
        if per_node:
            gpus = per_node * int(max_size or 0)
            total += gpus
            pools.append(f"{pool.label} {int(max_size or 0)} x {per_node} = {gpus}")
    if pools:
        found += _demand_beyond_capacity(resources, total)
    if total > cfg.max_total_gpus and pools:
        last = next(r for r in reversed(resources) if r.type in (NODE_GROUP, NODE_POOL))
        found.append(
            violation(
                POOL_CAP,
                last,
                f"GPU node pools at scalingConfig.maxSize (managed node groups) and "
                f"spec.limits (Karpenter NodePools) total {total} GPUs, above the cap "
                f"{cfg.max_total_gpus} (max_total_gpus): {'; '.join(pools)}. Lower "
                "scalingConfig.maxSize or the NodePool's spec.limits, or raise max_total_gpus "
                "in the stack's policy config.",
            )
        )
    return found


def _demand_beyond_capacity(resources: Sequence[ResourceView], capacity: int) -> list[Violation]:
    """The chain holds: the GPU workloads at their autoscalers' maxima fit in the pools."""
    holders = [w for w in scaled_workloads(resources) if w.gpus]
    demand = sum(w.gpus * w.at_max for w in holders)
    if demand <= capacity:
        return []
    by_label = {r.label: r for r in resources}
    named = "; ".join(
        f"{w.label} at max {w.at_max:g} replicas x {w.gpus:g} = {w.gpus * w.at_max:g}"
        for w in holders
    )
    return [
        violation(
            POOL_CAP,
            by_label[holders[-1].label],
            f"GPU workloads at their autoscalers' maxima hold {demand:g} GPUs ({named}), more "
            f"than the GPU node pools admit ({capacity}); the replicas beyond stay Pending. "
            "Lower the autoscaler's maximum, or raise the pools' maxSize (a NodePool's "
            "spec.limits) within max_total_gpus.",
        )
    ]


RULES: list[Rule] = [
    ResourceRule(
        LIMITS_ONLY,
        "nvidia.com/gpu is set in limits; if also in requests, the two are equal.",
        "mandatory",
        GpuResourceConfig,
        check_gpu_limits_only,
        "An unknown GPU count is skipped with an advisory note.",
    ),
    ResourceRule(
        PLACEMENT,
        "Pods that request a GPU tolerate the GPU taint and select GPU nodes.",
        "mandatory",
        GpuPlacementConfig,
        check_gpu_placement,
        "Unknown GPU counts, tolerations or node selection are skipped with an advisory note.",
    ),
    ResourceRule(
        TAINT_RESERVED,
        "Pods that request no GPU do not tolerate the GPU taint (GPU infrastructure excepted).",
        "mandatory",
        GpuTaintReservedConfig,
        check_gpu_taint_reserved,
        "Unknown tolerations or GPU counts are skipped with an advisory note.",
    ),
    StackRule(
        POOL_CAP,
        "All GPU node pools at their maximum size (managed node groups) or their limits "
        "(Karpenter NodePools) stay within the stack's GPU cap, and hold the GPU workloads "
        "at their autoscalers' maxima.",
        "mandatory",
        GpuPoolCapConfig,
        check_gpu_pool_capacity,
        "Fails: an unknown instance type or family, maxSize or NodePool limit cannot be "
        "known to be within the cap.",
    ),
]
