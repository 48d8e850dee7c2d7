"""Pod and container hardening: restricted security context, no host access."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field, field_validator

from costing.view import UNKNOWN, ResourceView, dig, entries_for
from policies.rule import ResourceRule, Rule, RuleConfig
from policies.violation import Violation, undetermined, violation
from policies.workloads import (
    Container,
    containers,
    containers_unknown,
    is_pod_bearing,
    pod_spec,
    pod_spec_path,
)

SECURITY_CONTEXT = "container-security-context"
HOST_ACCESS = "no-privileged-or-host-access"


class SecurityContextConfig(RuleConfig):
    # Workload name pattern -> checks it is excused from (reasons in the README),
    # e.g. {"dcgm-exporter-*": ["runAsNonRoot", "capabilities.add"]}.
    exemptions: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("exemptions")
    @classmethod
    def _known_checks(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        unknown = sorted({c for checks in value.values() for c in checks} - set(_CHECKS))
        if unknown:
            raise ValueError(f"no such check(s) {unknown}; checks: {', '.join(_CHECKS)}")
        return value


# check name -> (container field, required value, whether the pod's securityContext
# may provide it, remediation value as written in YAML)
_CHECKS: dict[str, tuple[tuple[str, ...], Callable[[Any], bool], bool, str]] = {
    "runAsNonRoot": (("runAsNonRoot",), lambda v: v is True, True, "true"),
    "readOnlyRootFilesystem": (("readOnlyRootFilesystem",), lambda v: v is True, False, "true"),
    "allowPrivilegeEscalation": (
        ("allowPrivilegeEscalation",),
        lambda v: v is False,
        False,
        "false",
    ),
    "capabilities.drop": (
        ("capabilities", "drop"),
        lambda v: isinstance(v, list) and "ALL" in v,
        False,
        "[ALL]",
    ),
    "capabilities.add": (
        ("capabilities", "add"),
        lambda v: v is None or (isinstance(v, list) and set(v) <= {"NET_BIND_SERVICE"}),
        False,
        "none beyond NET_BIND_SERVICE",
    ),
    "seccompProfile.type": (
        ("seccompProfile", "type"),
        lambda v: v == "RuntimeDefault",
        True,
        "RuntimeDefault",
    ),
}


def _effective(container: Container, pod: Any, keys: tuple[str, ...], inherits: bool) -> Any:
    value = dig(container.spec, "securityContext", *keys)
    if value is None and inherits:
        return dig(pod, "securityContext", *keys)
    return value


def check_security_context(resource: ResourceView, cfg: SecurityContextConfig) -> list[Violation]:
    if not is_pod_bearing(resource):
        return []
    if containers_unknown(resource):
        return [undetermined(SECURITY_CONTEXT, resource, "containers unknown at preview.")]
    exempt = entries_for(resource.display_name, cfg.exemptions)
    pod = pod_spec(resource)
    found: list[Violation] = []
    for container in containers(resource):
        failing: list[str] = []
        unknown: list[str] = []
        for check, (keys, ok, inherits, fix) in _CHECKS.items():
            if check in exempt:
                continue
            value = _effective(container, pod, keys, inherits)
            if value is UNKNOWN:
                unknown.append(check)
            elif not ok(value):
                failing.append(f"securityContext.{check}: {fix}")
        if unknown:
            found.append(
                undetermined(
                    SECURITY_CONTEXT,
                    resource,
                    f"{container.label}: securityContext {', '.join(unknown)} unknown at preview.",
                )
            )
        if failing:
            found.append(
                violation(
                    SECURITY_CONTEXT,
                    resource,
                    f"{container.label} is not hardened; set in "
                    f"{container.path}.securityContext: {'; '.join(failing)}.",
                )
            )
    return found


class HostAccessConfig(RuleConfig):
    # Workload name pattern -> hostPath paths it may mount (the GPU device plugin needs
    # /var/lib/kubelet/device-plugins); nothing else is allowed.
    allowed_host_paths: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("allowed_host_paths")
    @classmethod
    def _absolute(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        # Kubernetes only mounts absolute hostPaths, so a relative entry would allow nothing.
        relative = sorted({p for paths in value.values() for p in paths if not p.startswith("/")})
        if relative:
            raise ValueError(f"host paths must be absolute: {relative}")
        return value


def check_host_access(resource: ResourceView, cfg: HostAccessConfig) -> list[Violation]:
    if not is_pod_bearing(resource):
        return []
    pod = pod_spec(resource)
    base = pod_spec_path(resource)
    if pod is UNKNOWN or containers_unknown(resource):
        return [undetermined(HOST_ACCESS, resource, "pod spec unknown at preview.")]
    found: list[Violation] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        value = dig(pod, field)
        if value is UNKNOWN:
            found.append(undetermined(HOST_ACCESS, resource, f"{base}.{field} unknown."))
        elif value is True:
            found.append(
                violation(
                    HOST_ACCESS,
                    resource,
                    f"sets {base}.{field}: true; remove it (share nothing with the node).",
                )
            )
    for container in containers(resource):
        privileged = dig(container.spec, "securityContext", "privileged")
        if privileged is UNKNOWN:
            found.append(undetermined(HOST_ACCESS, resource, f"{container.label}: privileged?"))
        elif privileged is True:
            found.append(
                violation(
                    HOST_ACCESS,
                    resource,
                    f"{container.label} sets {container.path}.securityContext.privileged: "
                    "true; remove it and grant only the capabilities it needs.",
                )
            )
    volumes = dig(pod, "volumes")
    allowed = entries_for(resource.display_name, cfg.allowed_host_paths)
    if volumes is UNKNOWN:
        found.append(undetermined(HOST_ACCESS, resource, f"{base}.volumes unknown at preview."))
    for index, volume in enumerate(volumes if isinstance(volumes, list) else []):
        host_path = dig(volume, "hostPath")
        if host_path is None:
            continue
        path = dig(host_path, "path")
        if path is UNKNOWN:
            found.append(undetermined(HOST_ACCESS, resource, f"{base}.volumes[{index}] unknown."))
        elif path not in allowed:
            found.append(
                violation(
                    HOST_ACCESS,
                    resource,
                    f"mounts hostPath '{path}' ({base}.volumes[{index}].hostPath); use a "
                    "PVC, emptyDir or projected volume, or allow this path for the workload "
                    "in allowed_host_paths.",
                )
            )
    return found


RULES: list[Rule] = [
    ResourceRule(
        SECURITY_CONTEXT,
        "Containers run as non-root with a read-only root filesystem, no privilege "
        "escalation, ALL capabilities dropped and the RuntimeDefault seccomp profile.",
        "mandatory",
        SecurityContextConfig,
        check_security_context,
        "Unknown settings are skipped with an advisory note (never counted as set).",
    ),
    ResourceRule(
        HOST_ACCESS,
        "No privileged containers, hostPath volumes, hostNetwork, hostPID or hostIPC.",
        "mandatory",
        HostAccessConfig,
        check_host_access,
        "Unknown settings are skipped with an advisory note.",
    ),
]
