from __future__ import annotations

from policy_fixtures import DELETE, only, patched, workload

from costing.view import UNKNOWN
from policies.rules.pod_security import (
    HostAccessConfig,
    SecurityContextConfig,
    check_host_access,
    check_security_context,
)

SC = "spec.template.spec.containers.0.securityContext"


def test_hardened_container_passes() -> None:
    assert check_security_context(workload(), SecurityContextConfig()) == []


def test_every_missing_setting_is_listed_with_its_fix() -> None:
    view = patched(workload(), SC, {"allowPrivilegeEscalation": True})
    found = only(check_security_context(view, SecurityContextConfig()))
    assert found.resource == "Deployment 'agent-api'"
    assert found.message == (
        "Deployment 'agent-api': container 'api' is not hardened; set in "
        "spec.template.spec.containers[0].securityContext: securityContext.runAsNonRoot: true; "
        "securityContext.readOnlyRootFilesystem: true; securityContext.allowPrivilegeEscalation: "
        "false; securityContext.capabilities.drop: [ALL]; securityContext.seccompProfile.type: "
        "RuntimeDefault."
    )


def test_pod_level_run_as_non_root_and_seccomp_are_inherited() -> None:
    view = patched(workload(), f"{SC}.runAsNonRoot", DELETE)
    view = patched(view, f"{SC}.seccompProfile", DELETE)
    view = patched(
        view,
        "spec.template.spec.securityContext",
        {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    )
    assert check_security_context(view, SecurityContextConfig()) == []


def test_container_overrides_pod_level_setting() -> None:
    view = patched(workload(), f"{SC}.runAsNonRoot", False)
    view = patched(view, "spec.template.spec.securityContext", {"runAsNonRoot": True})
    found = only(check_security_context(view, SecurityContextConfig()))
    assert "securityContext.runAsNonRoot: true." in found.message


def test_exemptions_are_per_workload_and_per_check() -> None:
    view = patched(workload(name="dcgm-exporter"), f"{SC}.runAsNonRoot", False)
    cfg = SecurityContextConfig(exemptions={"dcgm-exporter": ("runAsNonRoot",)})
    assert check_security_context(view, cfg) == []
    other = patched(workload(name="agent-api"), f"{SC}.runAsNonRoot", False)
    assert only(check_security_context(other, cfg)).resource == "Deployment 'agent-api'"


def test_unknown_setting_is_never_counted_as_set() -> None:
    view = patched(workload(), f"{SC}.readOnlyRootFilesystem", UNKNOWN)
    [note] = check_security_context(view, SecurityContextConfig())
    assert note.undetermined
    assert note.message == (
        "Deployment 'agent-api': container 'api': securityContext readOnlyRootFilesystem "
        "unknown at preview."
    )


def test_no_host_access_passes() -> None:
    assert check_host_access(workload(), HostAccessConfig()) == []


def test_privileged_container() -> None:
    view = patched(workload(), f"{SC}.privileged", True)
    found = only(check_host_access(view, HostAccessConfig()))
    assert found.message == (
        "Deployment 'agent-api': container 'api' sets "
        "spec.template.spec.containers[0].securityContext.privileged: true; remove it and grant "
        "only the capabilities it needs."
    )


def test_host_network() -> None:
    view = patched(workload(), "spec.template.spec.hostNetwork", True)
    found = only(check_host_access(view, HostAccessConfig()))
    assert found.message == (
        "Deployment 'agent-api': sets spec.template.spec.hostNetwork: true; remove it (share "
        "nothing with the node)."
    )


def test_host_path_is_refused_unless_allowed_for_that_workload() -> None:
    volume = {"name": "plugins", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}
    view = patched(
        workload("kubernetes:apps/v1:DaemonSet", name="nvidia-device-plugin"),
        "spec.template.spec.volumes",
        [volume],
    )
    found = only(check_host_access(view, HostAccessConfig()))
    assert found.resource == "DaemonSet 'nvidia-device-plugin'"
    assert found.message == (
        "DaemonSet 'nvidia-device-plugin': mounts hostPath '/var/lib/kubelet/device-plugins' "
        "(spec.template.spec.volumes[0].hostPath); use a PVC, emptyDir or projected volume, or "
        "allow this path for the workload in allowed_host_paths."
    )
    allowed = HostAccessConfig(
        allowed_host_paths={"nvidia-device-plugin": ("/var/lib/kubelet/device-plugins",)}
    )
    assert check_host_access(view, allowed) == []


def test_added_capabilities_beyond_net_bind_service() -> None:
    view = patched(workload(), f"{SC}.capabilities.add", ["SYS_ADMIN"])
    found = only(check_security_context(view, SecurityContextConfig()))
    assert found.message == (
        "Deployment 'agent-api': container 'api' is not hardened; set in "
        "spec.template.spec.containers[0].securityContext: securityContext.capabilities.add: "
        "none beyond NET_BIND_SERVICE."
    )
    bind = patched(workload(), f"{SC}.capabilities.add", ["NET_BIND_SERVICE"])
    assert check_security_context(bind, SecurityContextConfig()) == []


def test_exemptions_match_per_pool_names_by_pattern() -> None:
    view = patched(workload(name="dcgm-exporter-gpu"), f"{SC}.capabilities.add", ["SYS_ADMIN"])
    cfg = SecurityContextConfig(exemptions={"dcgm-exporter-*": ("capabilities.add",)})
    assert check_security_context(view, cfg) == []
    lookalike = patched(workload(name="dcgm-exporterx"), f"{SC}.capabilities.add", ["SYS_ADMIN"])
    assert only(check_security_context(lookalike, cfg)).resource == "Deployment 'dcgm-exporterx'"
