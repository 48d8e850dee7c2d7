from __future__ import annotations

from policy_fixtures import DELETE, only, patched, workload

from costing.view import UNKNOWN
from policies.rules.probes import ProbesConfig, check_probes

C0 = "spec.template.spec.containers.0"


def test_distinct_probes_pass() -> None:
    assert check_probes(workload(), ProbesConfig()) == []


def test_missing_readiness_probe() -> None:
    view = patched(workload(), f"{C0}.readinessProbe", DELETE)
    found = only(check_probes(view, ProbesConfig()))
    assert found.resource == "Deployment 'agent-api'"
    assert found.message == (
        "Deployment 'agent-api': container 'api' has no "
        "spec.template.spec.containers[0].readinessProbe; add a readiness probe that checks "
        "dependencies and a liveness probe that only checks the process."
    )


def test_identical_probes() -> None:
    probe = {"httpGet": {"path": "/healthz", "port": 8080}}
    view = patched(patched(workload(), f"{C0}.readinessProbe", probe), f"{C0}.livenessProbe", probe)
    found = only(check_probes(view, ProbesConfig()))
    assert found.message == (
        "Deployment 'agent-api': container 'api': spec.template.spec.containers[0].livenessProbe "
        "is identical to readinessProbe, so a slow dependency restarts the pod; point liveness "
        "at a process-only endpoint or give it a longer failureThreshold."
    )


def test_jobs_need_no_probes() -> None:
    view = patched(
        workload("kubernetes:batch/v1:Job", name="migrate"),
        "spec.template.spec.containers.0.livenessProbe",
        DELETE,
    )
    assert check_probes(view, ProbesConfig()) == []


def test_unknown_probe_is_undecided() -> None:
    [note] = check_probes(patched(workload(), f"{C0}.livenessProbe", UNKNOWN), ProbesConfig())
    assert note.undetermined
