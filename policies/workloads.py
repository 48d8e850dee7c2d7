"""Where each pod-bearing kind keeps its pod spec, and how to walk its containers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from costing.kinds import STATEFULSET
from costing.view import UNKNOWN, ResourceView, dig

DEPLOYMENT: Final = "kubernetes:apps/v1:Deployment"
DAEMONSET: Final = "kubernetes:apps/v1:DaemonSet"
JOB: Final = "kubernetes:batch/v1:Job"
CRONJOB: Final = "kubernetes:batch/v1:CronJob"
POD: Final = "kubernetes:core/v1:Pod"
SCALED_JOB: Final = "kubernetes:keda.sh/v1alpha1:ScaledJob"
SCALED_OBJECT: Final = "kubernetes:keda.sh/v1alpha1:ScaledObject"
HPA: Final = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB: Final = "kubernetes:policy/v1:PodDisruptionBudget"
NETWORK_POLICY: Final = "kubernetes:networking.k8s.io/v1:NetworkPolicy"

# ScaledObjects scale Deployments and StatefulSets, which are checked as themselves;
# a KEDA ScaledJob carries its own pod template, so it is pod-bearing too.
POD_SPEC_PATHS: Final[dict[str, tuple[str, ...]]] = {
    DEPLOYMENT: ("spec", "template", "spec"),
    STATEFULSET: ("spec", "template", "spec"),
    DAEMONSET: ("spec", "template", "spec"),
    JOB: ("spec", "template", "spec"),
    CRONJOB: ("spec", "jobTemplate", "spec", "template", "spec"),
    POD: ("spec",),
    SCALED_JOB: ("spec", "jobTargetRef", "template", "spec"),
}
LONG_RUNNING: Final = frozenset({DEPLOYMENT, STATEFULSET, DAEMONSET, POD})
AUTOSCALERS: Final = frozenset({HPA, SCALED_OBJECT})


def is_pod_bearing(resource: ResourceView) -> bool:
    return resource.type in POD_SPEC_PATHS


def pod_spec_path(resource: ResourceView) -> str:
    return ".".join(POD_SPEC_PATHS[resource.type])


def pod_spec(resource: ResourceView) -> Any:
    """The pod spec dict, UNKNOWN, or None if absent."""
    return resource.get(*POD_SPEC_PATHS[resource.type])


def pod_labels(resource: ResourceView) -> Any:
    """The labels the workload's pods carry (a Pod's own labels)."""
    path = POD_SPEC_PATHS[resource.type][:-1]
    return resource.get(*path, "metadata", "labels")


@dataclass(frozen=True)
class Container:
    name: str
    path: str
    spec: Any
    init: bool

    @property
    def label(self) -> str:
        return f"{'init container' if self.init else 'container'} '{self.name}'"


def containers(resource: ResourceView, *, include_init: bool = True) -> Iterator[Container]:
    """Every container (and init container) whose list is known; see `containers_unknown`."""
    spec = pod_spec(resource)
    base = pod_spec_path(resource)
    lists = ["containers", "initContainers"] if include_init else ["containers"]
    for field in lists:
        items = dig(spec, field)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            name = dig(item, "name")
            yield Container(
                name if isinstance(name, str) else f"#{index}",
                f"{base}.{field}[{index}]",
                item,
                field == "initContainers",
            )


def containers_unknown(resource: ResourceView) -> bool:
    """True when the pod spec or a container list cannot be known yet."""
    spec = pod_spec(resource)
    return spec is UNKNOWN or any(
        dig(spec, field) is UNKNOWN for field in ("containers", "initContainers")
    )
