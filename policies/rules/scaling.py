"""Autoscaling and disruption: bounded autoscalers, no fighting over replicas, PDBs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from costing.kinds import STATEFULSET
from costing.view import UNKNOWN, ResourceView, number
from policies.rule import Count, NoConfig, PositiveCount, ResourceRule, Rule, RuleConfig, StackRule
from policies.violation import Violation, undetermined, violation
from policies.workloads import (
    AUTOSCALERS,
    DEPLOYMENT,
    HPA,
    PDB,
    SCALED_OBJECT,
    pod_labels,
)

BOUNDS = "autoscaler-bounds"
NO_REPLICAS = "autoscaled-workload-sets-no-replicas"
PDB_RULE = "replicated-workload-has-pdb"

# Defaults the two APIs apply when the field is absent.
_FIELDS = {
    HPA: ("minReplicas", 1, "maxReplicas", None),
    SCALED_OBJECT: ("minReplicaCount", 0, "maxReplicaCount", 100),
}


class BoundsConfig(RuleConfig):
    max_replicas: PositiveCount = 20


def _bounds(autoscaler: ResourceView) -> tuple[Any, Any]:
    min_field, min_default, max_field, max_default = _FIELDS[autoscaler.type]
    low = autoscaler.get("spec", min_field)
    high = autoscaler.get("spec", max_field)
    return (min_default if low is None else low), (max_default if high is None else high)


def check_autoscaler_bounds(resource: ResourceView, cfg: BoundsConfig) -> list[Violation]:
    if resource.type not in AUTOSCALERS:
        return []
    min_field, _, max_field, _ = _FIELDS[resource.type]
    low, high = _bounds(resource)
    if low is UNKNOWN or high is UNKNOWN:
        return [undetermined(BOUNDS, resource, "replica bounds unknown at preview.")]
    if high is None:
        return [
            violation(
                BOUNDS,
                resource,
                f"has no spec.{max_field}; set it (at most {cfg.max_replicas}).",
            )
        ]
    found: list[Violation] = []
    if int(high) > cfg.max_replicas:
        found.append(
            violation(
                BOUNDS,
                resource,
                f"spec.{max_field} is {number(high)}, above the cap {cfg.max_replicas} (max_replicas); "
                f"lower spec.{max_field} or raise max_replicas in the stack's policy config.",
            )
        )
    if int(low) > int(high):
        found.append(
            violation(
                BOUNDS,
                resource,
                f"spec.{min_field} {number(low)} is greater than spec.{max_field} {number(high)}; "
                f"set spec.{min_field} <= spec.{max_field}.",
            )
        )
    return found


def _target(autoscaler: ResourceView) -> tuple[Any, Any]:
    """The (kind, name) an autoscaler scales; KEDA defaults the kind to Deployment."""
    kind = autoscaler.get("spec", "scaleTargetRef", "kind")
    name = autoscaler.get("spec", "scaleTargetRef", "name")
    return (kind or "Deployment"), name


def _same_namespace(a: ResourceView, b: ResourceView) -> bool:
    return bool(a.namespace == b.namespace)


# The Kubernetes provider's field manager under server-side apply: `pulumi-kubernetes-`
# and a suffix, unless the object names another with this annotation.
_PULUMI_MANAGER = "pulumi-kubernetes"
_FIELD_MANAGER_ANNOTATION = "pulumi.com/patchFieldManager"


def _sets_replicas(workload: ResourceView) -> bool:
    """Whether the program set spec.replicas. An object read back from a cluster also
    holds what the API server defaulted, spec.replicas among them, and lists in
    metadata.managedFields the fields each manager applied: there spec.replicas counts
    only if Pulumi's manager applied it. A rendered or planned object holds only what
    the program declared."""
    if workload.get("spec", "replicas") is None:
        return False
    managed = workload.get("metadata", "managedFields")
    if not isinstance(managed, Sequence) or isinstance(managed, str):
        return True
    named = workload.get("metadata", "annotations", _FIELD_MANAGER_ANNOTATION)
    for entry in managed:
        manager = entry.get("manager") if isinstance(entry, dict) else None
        if not isinstance(manager, str):
            continue
        if manager == named or manager.startswith(_PULUMI_MANAGER):
            spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
            if "f:replicas" in spec:
                return True
    return False


def check_autoscaled_no_replicas(
    resources: Sequence[ResourceView], _cfg: NoConfig
) -> list[Violation]:
    found: list[Violation] = []
    workloads = [r for r in resources if r.type in (DEPLOYMENT, STATEFULSET)]
    for autoscaler in (r for r in resources if r.type in AUTOSCALERS):
        kind, name = _target(autoscaler)
        if kind is UNKNOWN or name is UNKNOWN:
            found.append(
                undetermined(NO_REPLICAS, autoscaler, "spec.scaleTargetRef unknown at preview.")
            )
            continue
        for workload in workloads:
            if (
                workload.kind == kind
                and workload.display_name == name
                and _same_namespace(workload, autoscaler)
                and _sets_replicas(workload)
            ):
                found.append(
                    violation(
                        NO_REPLICAS,
                        workload,
                        f"is scaled by {autoscaler.label} but sets spec.replicas; remove "
                        "spec.replicas so each apply does not reset the autoscaler's count.",
                    )
                )
    return found


class PdbConfig(RuleConfig):
    min_replicas_requiring_pdb: Count = 2


def _min_replicas(workload: ResourceView, autoscalers: Sequence[ResourceView]) -> Any:
    for autoscaler in autoscalers:
        kind, name = _target(autoscaler)
        if (
            kind == workload.kind
            and name == workload.display_name
            and _same_namespace(workload, autoscaler)
        ):
            return _bounds(autoscaler)[0]
    replicas = workload.get("spec", "replicas")
    return 1 if replicas is None else replicas


def _selects(pdb: ResourceView, labels: Any) -> bool:
    selector = pdb.get("spec", "selector", "matchLabels")
    if not isinstance(selector, dict) or not selector or not isinstance(labels, dict):
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def _allowed_disruptions(pdb: ResourceView, replicas: int) -> Any:
    """How many of `replicas` pods the PDB lets go at once (UNKNOWN if it can't tell)."""
    min_available = pdb.get("spec", "minAvailable")
    max_unavailable = pdb.get("spec", "maxUnavailable")
    if min_available is UNKNOWN or max_unavailable is UNKNOWN:
        return UNKNOWN
    if min_available is not None:
        return replicas - _absolute(min_available, replicas, math.ceil)
    if max_unavailable is not None:
        return _absolute(max_unavailable, replicas, math.floor)
    return replicas  # neither set: the API rejects it, and it protects nothing


def _absolute(value: Any, replicas: int, rounding: Any) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return int(rounding(replicas * int(value[:-1]) / 100))
    return int(value)


def check_replicated_has_pdb(resources: Sequence[ResourceView], cfg: PdbConfig) -> list[Violation]:
    found: list[Violation] = []
    autoscalers = [r for r in resources if r.type in AUTOSCALERS]
    pdbs = [r for r in resources if r.type == PDB]
    for workload in (r for r in resources if r.type in (DEPLOYMENT, STATEFULSET)):
        replicas = _min_replicas(workload, autoscalers)
        labels = pod_labels(workload)
        if replicas is UNKNOWN or labels is UNKNOWN or workload.namespace is UNKNOWN:
            found.append(
                undetermined(PDB_RULE, workload, "replicas or pod labels unknown at preview.")
            )
            continue
        replicas = int(replicas)
        if replicas < cfg.min_replicas_requiring_pdb:
            continue
        covering = [p for p in pdbs if _same_namespace(p, workload) and _selects(p, labels)]
        if not covering:
            found.append(
                violation(
                    PDB_RULE,
                    workload,
                    f"runs at least {replicas} replicas but no PodDisruptionBudget in namespace "
                    f"'{workload.namespace}' selects its pods "
                    f"(spec.template.metadata.labels {labels}); add a PodDisruptionBudget with "
                    f"spec.selector.matchLabels from those labels and spec.minAvailable "
                    f"{replicas - 1}.",
                )
            )
            continue
        for pdb in covering:
            allowed = _allowed_disruptions(pdb, replicas)
            if allowed is UNKNOWN:
                found.append(undetermined(PDB_RULE, pdb, "minAvailable unknown at preview."))
            elif allowed < 1:
                found.append(
                    violation(
                        PDB_RULE,
                        pdb,
                        f"covers {workload.label}, whose minimum is {replicas} replicas, but "
                        f"spec.minAvailable {number(pdb.get('spec', 'minAvailable'))} / maxUnavailable "
                        f"{number(pdb.get('spec', 'maxUnavailable'))} allows no eviction, so node drains "
                        f"block; set spec.minAvailable below {replicas} (e.g. {replicas - 1}).",
                    )
                )
    return found


RULES: list[Rule] = [
    ResourceRule(
        BOUNDS,
        "An HPA's or ScaledObject's maxReplicas stays within the cap, and min <= max.",
        "mandatory",
        BoundsConfig,
        check_autoscaler_bounds,
        "Unknown bounds are skipped with an advisory note.",
    ),
    StackRule(
        NO_REPLICAS,
        "A Deployment or StatefulSet targeted by an HPA or ScaledObject sets no replicas.",
        "mandatory",
        NoConfig,
        check_autoscaled_no_replicas,
        "An unknown scaleTargetRef is skipped with an advisory note.",
    ),
    StackRule(
        PDB_RULE,
        "Workloads with 2+ minimum replicas have a PDB whose minAvailable is below that minimum.",
        "mandatory",
        PdbConfig,
        check_replicated_has_pdb,
        "Unknown replicas, labels or minAvailable are skipped with an advisory note.",
    ),
]
