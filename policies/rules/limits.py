"""Container requests and limits: present, ordered, within the stack's caps."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from components.quantity import parse_quantity
from costing.view import UNKNOWN, ResourceView, Unknown, dig
from policies.rule import Count, NoConfig, Quantity, ResourceRule, Rule, RuleConfig
from policies.violation import Violation, undetermined, violation
from policies.workloads import (
    containers,
    containers_unknown,
    is_pod_bearing,
    pod_spec,
    pod_spec_path,
)

REQUIRED = "container-resources-required"
CAPS = "pod-limits-within-caps"
ORDERED = "requests-within-limits"
EPHEMERAL = "ephemeral-storage-bounded"

GPU = "nvidia.com/gpu"
_EXAMPLES = {
    ("requests", "cpu"): "250m",
    ("requests", "memory"): "256Mi",
    ("limits", "cpu"): "1",
    ("limits", "memory"): "512Mi",
}


def _unknown_containers(rule: str, resource: ResourceView) -> list[Violation]:
    return [undetermined(rule, resource, "its containers are unknown at preview; not checked.")]


def check_resources_required(resource: ResourceView, _cfg: NoConfig) -> list[Violation]:
    if not is_pod_bearing(resource):
        return []
    if containers_unknown(resource):
        return _unknown_containers(REQUIRED, resource)
    found: list[Violation] = []
    for container in containers(resource):
        for (kind, name), example in _EXAMPLES.items():
            value = dig(container.spec, "resources", kind, name)
            path = f"{container.path}.resources.{kind}.{name}"
            if value is UNKNOWN:
                # A value that is set but unknown is still set; only a whole unknown
                # block leaves the presence undecided.
                if dig(container.spec, "resources", kind) is UNKNOWN:
                    found.append(
                        undetermined(
                            REQUIRED, resource, f"{container.label}: {path} is unknown at preview."
                        )
                    )
                continue
            if value is None:
                found.append(
                    violation(
                        REQUIRED,
                        resource,
                        f"{container.label} has no {path}; "
                        f"set resources.{kind}.{name} (e.g. {example}).",
                    )
                )
    return found


class LimitsCapsConfig(RuleConfig):
    max_cpu_per_pod: Quantity = "16"
    max_memory_per_pod: Quantity = "64Gi"
    max_gpus_per_pod: Count = 8


class _MalformedError(ValueError):
    pass


def _pod_limit(resource: ResourceView, name: str) -> Decimal | Unknown:
    """The pod's effective limit: the larger of the largest init container and the sum of
    the containers, as the scheduler computes it. Raises _MalformedError naming the field."""
    total = Decimal(0)
    highest_init = Decimal(0)
    for container in containers(resource):
        value = dig(container.spec, "resources", "limits", name)
        if value is None:
            continue
        if isinstance(value, Unknown):
            return value
        try:
            quantity = parse_quantity(value)
        except (ValueError, TypeError):
            raise _MalformedError(
                f"{container.label}: {container.path}.resources.limits.{name} {value!r}"
            ) from None
        if container.init:
            highest_init = max(highest_init, quantity)
        else:
            total += quantity
    return max(total, highest_init)


def check_limits_within_caps(resource: ResourceView, cfg: LimitsCapsConfig) -> list[Violation]:
    if not is_pod_bearing(resource):
        return []
    if containers_unknown(resource):
        return _unknown_containers(CAPS, resource)
    caps = {
        "cpu": ("max_cpu_per_pod", cfg.max_cpu_per_pod),
        "memory": ("max_memory_per_pod", cfg.max_memory_per_pod),
        GPU: ("max_gpus_per_pod", str(cfg.max_gpus_per_pod)),
    }
    found: list[Violation] = []
    for name, (key, cap) in caps.items():
        try:
            limit = _pod_limit(resource, name)
        except _MalformedError as exc:
            found.append(
                violation(
                    CAPS,
                    resource,
                    f"{exc} is not a Kubernetes quantity; use e.g. 500m, 2, 512Mi or 1Gi.",
                )
            )
            continue
        if isinstance(limit, Unknown):
            found.append(
                undetermined(CAPS, resource, f"a resources.limits.{name} is unknown at preview.")
            )
        elif limit > parse_quantity(cap):
            found.append(
                violation(
                    CAPS,
                    resource,
                    f"pod resources.limits.{name} totals {_fmt(limit, name)}, above the "
                    f"stack cap {cap} ({key}); lower the containers' resources.limits.{name} "
                    f"in {pod_spec_path(resource)} or raise {key} in the stack's policy config.",
                )
            )
    return found


def _fmt(quantity: Decimal, name: str) -> str:
    if name == "memory":
        gib = quantity / Decimal(2**30)
        return f"{gib.normalize():f}Gi"
    return f"{quantity.normalize():f}"


def check_requests_within_limits(resource: ResourceView, _cfg: NoConfig) -> list[Violation]:
    if not is_pod_bearing(resource):
        return []
    if containers_unknown(resource):
        return _unknown_containers(ORDERED, resource)
    found: list[Violation] = []
    for container in containers(resource):
        requests = dig(container.spec, "resources", "requests")
        limits = dig(container.spec, "resources", "limits")
        if requests is UNKNOWN or limits is UNKNOWN:
            found.append(
                undetermined(
                    ORDERED, resource, f"{container.label}: resources are unknown at preview."
                )
            )
            continue
        if not isinstance(requests, dict) or not isinstance(limits, dict):
            continue
        for name in sorted(requests.keys() & limits.keys()):
            request, limit = requests[name], limits[name]
            path = f"{container.path}.resources"
            if request is UNKNOWN or limit is UNKNOWN:
                found.append(
                    undetermined(
                        ORDERED,
                        resource,
                        f"{container.label}: {path}.requests/limits.{name} unknown at preview.",
                    )
                )
                continue
            try:
                exceeds = parse_quantity(request) > parse_quantity(limit)
            except (ValueError, TypeError):
                found.append(
                    violation(
                        ORDERED,
                        resource,
                        f"{container.label}: {path}.requests.{name} {request!r} or "
                        f"limits.{name} {limit!r} is not a Kubernetes quantity; "
                        "use e.g. 500m, 2, 512Mi or 1Gi.",
                    )
                )
                continue
            if exceeds:
                found.append(
                    violation(
                        ORDERED,
                        resource,
                        f"{container.label}: {path}.requests.{name} {request} exceeds "
                        f"limits.{name} {limit}; lower the request to at most the limit.",
                    )
                )
    return found


class EphemeralConfig(RuleConfig):
    max_ephemeral_storage: Quantity = "10Gi"


def check_ephemeral_storage(resource: ResourceView, cfg: EphemeralConfig) -> list[Violation]:
    if not is_pod_bearing(resource):
        return []
    if containers_unknown(resource):
        return _unknown_containers(EPHEMERAL, resource)
    cap = parse_quantity(cfg.max_ephemeral_storage)
    found: list[Violation] = []
    bounded: list[tuple[str, str, Any]] = []
    for container in containers(resource):
        path = f"{container.path}.resources.limits.ephemeral-storage"
        value = dig(container.spec, "resources", "limits", "ephemeral-storage")
        if value is None:
            found.append(
                violation(
                    EPHEMERAL,
                    resource,
                    f"{container.label} has no {path}; set resources.limits.ephemeral-storage "
                    f"(e.g. 1Gi, at most {cfg.max_ephemeral_storage}).",
                )
            )
        else:
            bounded.append((container.label, path, value))
    volumes = dig(pod_spec(resource), "volumes")
    if volumes is UNKNOWN:
        found.append(undetermined(EPHEMERAL, resource, "its volumes are unknown at preview."))
    elif isinstance(volumes, list):
        base = pod_spec_path(resource)
        for index, volume in enumerate(volumes):
            empty_dir = dig(volume, "emptyDir")
            if empty_dir is None:
                continue
            path = f"{base}.volumes[{index}].emptyDir.sizeLimit"
            label = f"emptyDir volume '{dig(volume, 'name')}'"
            size = dig(empty_dir, "sizeLimit")
            if size is None:
                found.append(
                    violation(
                        EPHEMERAL,
                        resource,
                        f"{label} has no {path}; set emptyDir.sizeLimit "
                        f"(e.g. 1Gi, at most {cfg.max_ephemeral_storage}).",
                    )
                )
            else:
                bounded.append((label, path, size))
    for label, path, value in bounded:
        if value is UNKNOWN:
            found.append(undetermined(EPHEMERAL, resource, f"{label}: {path} unknown at preview."))
            continue
        try:
            too_big = parse_quantity(value) > cap
        except (ValueError, TypeError):
            found.append(
                violation(
                    EPHEMERAL,
                    resource,
                    f"{label}: {path} {value!r} is not a Kubernetes quantity; use e.g. 1Gi.",
                )
            )
            continue
        if too_big:
            found.append(
                violation(
                    EPHEMERAL,
                    resource,
                    f"{label}: {path} is {value}, above the cap {cfg.max_ephemeral_storage} "
                    "(max_ephemeral_storage); lower it or raise the cap in the policy config.",
                )
            )
    return found


RULES: list[Rule] = [
    ResourceRule(
        REQUIRED,
        "Every container and init container sets CPU and memory requests and limits.",
        "mandatory",
        NoConfig,
        check_resources_required,
        "A set but unknown value counts as set; an unknown container list or resources "
        "block is skipped with an advisory note.",
    ),
    ResourceRule(
        CAPS,
        "A pod's CPU, memory and GPU limits stay within the stack's per-pod caps.",
        "mandatory",
        LimitsCapsConfig,
        check_limits_within_caps,
        "Skipped with an advisory note when a contributing limit is unknown.",
    ),
    ResourceRule(
        ORDERED,
        "No container requests more of a resource than its limit.",
        "mandatory",
        NoConfig,
        check_requests_within_limits,
        "Skipped with an advisory note for the unknown pair.",
    ),
    ResourceRule(
        EPHEMERAL,
        "Every container limits ephemeral-storage and every emptyDir sets a sizeLimit, "
        "within the cap.",
        "mandatory",
        EphemeralConfig,
        check_ephemeral_storage,
        "A missing limit fails; an unknown value is skipped with an advisory note.",
    ),
]
