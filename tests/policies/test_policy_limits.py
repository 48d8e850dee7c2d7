from __future__ import annotations

import pytest
from policy_fixtures import DELETE, container, only, patched, pod_spec, real, workload
from pulumi.output import UNKNOWN as MOCK_UNKNOWN

from costing.view import UNKNOWN, ResourceView
from policies.rule import NoConfig
from policies.rules.limits import (
    EphemeralConfig,
    LimitsCapsConfig,
    check_ephemeral_storage,
    check_limits_within_caps,
    check_requests_within_limits,
    check_resources_required,
)
from policies.workloads import POD_SPEC_PATHS

C0 = "spec.template.spec.containers.0"


@pytest.mark.parametrize("kind", sorted(POD_SPEC_PATHS))
def test_missing_memory_limit_is_named_for_every_pod_bearing_kind(kind: str) -> None:
    view = workload(kind, name="agent-api")
    base = ".".join(POD_SPEC_PATHS[kind])
    broken = patched(view, f"{base}.containers.0.resources.limits.memory", DELETE)
    found = only(check_resources_required(broken, NoConfig()))
    kind_name = kind.rsplit(":", 1)[-1]
    assert found.resource == f"{kind_name} 'agent-api'"
    assert found.message == (
        f"{kind_name} 'agent-api': container 'api' has no "
        f"{base}.containers[0].resources.limits.memory; set resources.limits.memory "
        "(e.g. 512Mi)."
    )


def test_init_containers_need_requests_too() -> None:
    init = container("migrate")
    del init["resources"]["requests"]
    view = patched(workload(), "spec.template.spec.initContainers", [init])
    found = real(check_resources_required(view, NoConfig()))
    assert [v.message for v in found] == [
        "Deployment 'agent-api': init container 'migrate' has no "
        f"spec.template.spec.initContainers[0].resources.requests.{name}; "
        f"set resources.requests.{name} (e.g. {example})."
        for name, example in (("cpu", "250m"), ("memory", "256Mi"))
    ]


def test_unknown_container_list_is_undecided_not_passed() -> None:
    view = patched(workload(), "spec.template.spec.containers", UNKNOWN)
    [note] = check_resources_required(view, NoConfig())
    assert note.undetermined
    assert note.message == (
        "Deployment 'agent-api': its containers are unknown at preview; not checked."
    )


def test_set_but_unknown_limit_counts_as_set() -> None:
    view = patched(workload(), f"{C0}.resources.limits.memory", UNKNOWN)
    assert check_resources_required(view, NoConfig()) == []


def test_pod_limits_over_the_memory_cap() -> None:
    second = container("sidecar")
    second["resources"]["limits"]["memory"] = "8Gi"
    view = workload(spec=pod_spec(container(), second))
    found = only(check_limits_within_caps(view, LimitsCapsConfig(max_memory_per_pod="8Gi")))
    assert found.resource == "Deployment 'agent-api'"
    assert found.message == (
        "Deployment 'agent-api': pod resources.limits.memory totals 8.5Gi, above the stack "
        "cap 8Gi (max_memory_per_pod); lower the containers' resources.limits.memory in "
        "spec.template.spec or raise max_memory_per_pod in the stack's policy config."
    )


def _with_gpus(count: int) -> ResourceView:
    view = workload()
    view.props["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"
    ] = count
    return view


def test_gpu_cap_allows_the_configured_count() -> None:
    assert check_limits_within_caps(_with_gpus(1), LimitsCapsConfig(max_gpus_per_pod=1)) == []


def test_gpu_cap_exceeded() -> None:
    found = only(check_limits_within_caps(_with_gpus(2), LimitsCapsConfig(max_gpus_per_pod=1)))
    assert found.message == (
        "Deployment 'agent-api': pod resources.limits.nvidia.com/gpu totals 2, above the stack "
        "cap 1 (max_gpus_per_pod); lower the containers' resources.limits.nvidia.com/gpu in "
        "spec.template.spec or raise max_gpus_per_pod in the stack's policy config."
    )


def test_init_container_limits_count_as_the_max_not_the_sum() -> None:
    init = container("migrate")
    init["resources"]["limits"]["cpu"] = "2"
    view = patched(workload(), "spec.template.spec.initContainers", [init])
    assert check_limits_within_caps(view, LimitsCapsConfig(max_cpu_per_pod="2")) == []
    assert real(check_limits_within_caps(view, LimitsCapsConfig(max_cpu_per_pod="1.5")))


def test_unknown_limit_skips_caps_with_a_note() -> None:
    view = patched(workload(), f"{C0}.resources.limits.cpu", UNKNOWN)
    found = check_limits_within_caps(view, LimitsCapsConfig())
    assert [(v.undetermined, v.message) for v in found] == [
        (True, "Deployment 'agent-api': a resources.limits.cpu is unknown at preview.")
    ]


def test_request_above_limit() -> None:
    view = patched(workload(), f"{C0}.resources.requests.memory", "1Gi")
    found = only(check_requests_within_limits(view, NoConfig()))
    assert found.resource == "Deployment 'agent-api'"
    assert found.message == (
        "Deployment 'agent-api': container 'api': spec.template.spec.containers[0].resources"
        ".requests.memory 1Gi exceeds limits.memory 512Mi; lower the request to at most the "
        "limit."
    )


def test_malformed_quantity_is_a_violation() -> None:
    view = patched(workload(), f"{C0}.resources.requests.cpu", "lots")
    found = only(check_requests_within_limits(view, NoConfig()))
    assert "requests.cpu 'lots' or limits.cpu '1' is not a Kubernetes quantity" in found.message


def test_missing_ephemeral_storage_limit() -> None:
    view = patched(workload(), f"{C0}.resources.limits.ephemeral-storage", DELETE)
    found = only(check_ephemeral_storage(view, EphemeralConfig()))
    assert found.resource == "Deployment 'agent-api'"
    assert found.message == (
        "Deployment 'agent-api': container 'api' has no "
        "spec.template.spec.containers[0].resources.limits.ephemeral-storage; set "
        "resources.limits.ephemeral-storage (e.g. 1Gi, at most 10Gi)."
    )


def test_unbounded_empty_dir() -> None:
    view = patched(workload(), "spec.template.spec.volumes.0.emptyDir", {})
    found = only(check_ephemeral_storage(view, EphemeralConfig()))
    assert found.message == (
        "Deployment 'agent-api': emptyDir volume 'tmp' has no "
        "spec.template.spec.volumes[0].emptyDir.sizeLimit; set emptyDir.sizeLimit "
        "(e.g. 1Gi, at most 10Gi)."
    )


def test_ephemeral_storage_over_cap() -> None:
    found = only(
        check_ephemeral_storage(workload(), EphemeralConfig(max_ephemeral_storage="512Mi"))
    )
    assert found.message == (
        "Deployment 'agent-api': container 'api': "
        "spec.template.spec.containers[0].resources.limits.ephemeral-storage is 1Gi, above "
        "the cap 512Mi (max_ephemeral_storage); lower it or raise the cap in the policy config."
    )


def test_mock_unknowns_are_normalised_before_rules_see_them() -> None:
    props = workload().props
    props["spec"]["template"]["spec"]["containers"] = MOCK_UNKNOWN
    view = ResourceView.of("kubernetes:apps/v1:Deployment", "agent-api", "", props)
    found = check_ephemeral_storage(view, EphemeralConfig())
    assert [(v.undetermined, v.resource) for v in found] == [(True, "Deployment 'agent-api'")]


def test_malformed_limit_is_named_by_the_caps_rule() -> None:
    view = patched(workload(), f"{C0}.resources.limits.memory", "half a gig")
    found = only(check_limits_within_caps(view, LimitsCapsConfig()))
    assert found.message == (
        "Deployment 'agent-api': container 'api': spec.template.spec.containers[0].resources"
        ".limits.memory 'half a gig' is not a Kubernetes quantity; use e.g. 500m, 2, 512Mi or "
        "1Gi."
    )
