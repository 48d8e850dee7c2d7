from __future__ import annotations

from typing import Any

from policy_fixtures import only, patched, resource, workload

from costing.view import UNKNOWN, ResourceView
from policies.rule import NoConfig
from policies.rules.scaling import (
    BoundsConfig,
    PdbConfig,
    check_autoscaled_no_replicas,
    check_autoscaler_bounds,
    check_replicated_has_pdb,
)

LABELS = {"app.kubernetes.io/name": "agent-worker"}


def scaled_object(
    min_count: Any = 2, max_count: Any = 10, target: str = "agent-worker"
) -> ResourceView:
    spec: dict[str, Any] = {"scaleTargetRef": {"name": target}}
    if min_count is not None:
        spec["minReplicaCount"] = min_count
    if max_count is not None:
        spec["maxReplicaCount"] = max_count
    return resource(
        "kubernetes:keda.sh/v1alpha1:ScaledObject",
        "agent-worker",
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "agent-worker", "namespace": "agents"},
            "spec": spec,
        },
    )


def hpa(min_replicas: Any = 2, max_replicas: Any = 6) -> ResourceView:
    return resource(
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
        "agent-api",
        {
            "metadata": {"name": "agent-api", "namespace": "agents"},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "agent-api",
                },
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
            },
        },
    )


def pdb(min_available: Any = 1, labels: dict[str, str] | None = None) -> ResourceView:
    return resource(
        "kubernetes:policy/v1:PodDisruptionBudget",
        "agent-worker",
        {
            "metadata": {"name": "agent-worker", "namespace": "agents"},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": labels or LABELS}},
        },
    )


def worker(replicas: Any = None) -> ResourceView:
    view = workload(name="agent-worker", labels=LABELS)
    return view if replicas is None else patched(view, "spec.replicas", replicas)


def test_bounded_autoscalers_pass() -> None:
    assert check_autoscaler_bounds(scaled_object(), BoundsConfig()) == []
    assert check_autoscaler_bounds(hpa(), BoundsConfig()) == []


def test_scaled_object_max_over_cap() -> None:
    found = only(
        check_autoscaler_bounds(scaled_object(max_count=50), BoundsConfig(max_replicas=20))
    )
    assert found.resource == "ScaledObject 'agent-worker'"
    assert found.message == (
        "ScaledObject 'agent-worker': spec.maxReplicaCount is 50, above the cap 20 "
        "(max_replicas); lower spec.maxReplicaCount or raise max_replicas in the stack's "
        "policy config."
    )


def test_scaled_object_without_max_gets_kedas_default_of_100() -> None:
    found = only(check_autoscaler_bounds(scaled_object(max_count=None), BoundsConfig()))
    assert "spec.maxReplicaCount is 100, above the cap 20" in found.message


def test_hpa_min_above_max() -> None:
    found = only(check_autoscaler_bounds(hpa(min_replicas=8, max_replicas=6), BoundsConfig()))
    assert found.resource == "HorizontalPodAutoscaler 'agent-api'"
    assert found.message == (
        "HorizontalPodAutoscaler 'agent-api': spec.minReplicas 8 is greater than "
        "spec.maxReplicas 6; set spec.minReplicas <= spec.maxReplicas."
    )


def test_unknown_bounds_are_undecided() -> None:
    [note] = check_autoscaler_bounds(hpa(max_replicas=UNKNOWN), BoundsConfig())
    assert note.undetermined


def test_autoscaled_deployment_without_replicas_passes() -> None:
    assert check_autoscaled_no_replicas([worker(), scaled_object()], NoConfig()) == []


def test_autoscaled_deployment_setting_replicas() -> None:
    found = only(check_autoscaled_no_replicas([worker(replicas=3), scaled_object()], NoConfig()))
    assert found.resource == "Deployment 'agent-worker'"
    assert found.message == (
        "Deployment 'agent-worker': is scaled by ScaledObject 'agent-worker' but sets "
        "spec.replicas; remove spec.replicas so each apply does not reset the autoscaler's count."
    )


def _live(view: ResourceView, managers: dict[str, bool]) -> ResourceView:
    """The workload as a cluster returns it: spec.replicas always set (the API server
    defaults it to 1), and managedFields saying which manager applied which field."""
    live = view if view.get("spec", "replicas") is not None else patched(view, "spec.replicas", 1)
    entries = [
        {
            "manager": manager,
            "operation": "Apply",
            "fieldsV1": {"f:spec": {"f:replicas": {}} if owns else {"f:template": {}}},
        }
        for manager, owns in managers.items()
    ]
    return patched(live, "metadata.managedFields", entries)


def test_a_live_object_whose_replicas_the_server_defaulted_passes() -> None:
    """Regression: against a live cluster the Deployment's outputs carry the defaulted
    spec.replicas. Pulumi's manager applied the rest of the spec, not replicas."""
    live = _live(worker(), {"pulumi-kubernetes-7c1e2f0a": False, "kube-controller-manager": True})
    assert live.get("spec", "replicas") == 1
    assert check_autoscaled_no_replicas([live, scaled_object()], NoConfig()) == []


def test_a_live_object_whose_replicas_pulumi_applied_violates() -> None:
    live = _live(worker(replicas=3), {"pulumi-kubernetes-7c1e2f0a": True})
    found = only(check_autoscaled_no_replicas([live, scaled_object()], NoConfig()))
    assert found.resource == "Deployment 'agent-worker'"


def test_a_renamed_field_manager_is_still_pulumis() -> None:
    live = _live(worker(replicas=3), {"team-deployer": True})
    live = patched(live, "metadata.annotations", {"pulumi.com/patchFieldManager": "team-deployer"})
    assert len(check_autoscaled_no_replicas([live, scaled_object()], NoConfig())) == 1
    # Another manager's replicas are not the program's.
    other = _live(worker(replicas=3), {"team-deployer": True})
    assert check_autoscaled_no_replicas([other, scaled_object()], NoConfig()) == []


def test_replicas_on_a_deployment_nobody_scales_are_fine() -> None:
    assert check_autoscaled_no_replicas([worker(replicas=3)], NoConfig()) == []


def test_replicated_workload_with_pdb_passes() -> None:
    assert check_replicated_has_pdb([worker(), scaled_object(), pdb()], PdbConfig()) == []


def test_single_replica_workload_needs_no_pdb() -> None:
    assert check_replicated_has_pdb([worker()], PdbConfig()) == []


def test_replicated_workload_without_pdb() -> None:
    found = only(check_replicated_has_pdb([worker(replicas=3)], PdbConfig()))
    assert found.resource == "Deployment 'agent-worker'"
    assert found.message == (
        "Deployment 'agent-worker': runs at least 3 replicas but no PodDisruptionBudget in "
        "namespace 'agents' selects its pods (spec.template.metadata.labels "
        "{'app.kubernetes.io/name': 'agent-worker'}); add a PodDisruptionBudget with "
        "spec.selector.matchLabels from those labels and spec.minAvailable 2."
    )


def test_pdb_selecting_other_pods_does_not_count() -> None:
    resources = [worker(replicas=3), pdb(labels={"app.kubernetes.io/name": "other"})]
    assert only(check_replicated_has_pdb(resources, PdbConfig())).resource == (
        "Deployment 'agent-worker'"
    )


def test_pdb_min_available_equal_to_autoscaler_minimum_blocks_drains() -> None:
    resources = [worker(), scaled_object(min_count=2), pdb(min_available=2)]
    found = only(check_replicated_has_pdb(resources, PdbConfig()))
    assert found.resource == "PodDisruptionBudget 'agent-worker'"
    assert found.message == (
        "PodDisruptionBudget 'agent-worker': covers Deployment 'agent-worker', whose minimum "
        "is 2 replicas, but spec.minAvailable 2 / maxUnavailable None allows no eviction, so "
        "node drains block; set spec.minAvailable below 2 (e.g. 1)."
    )


def test_pdb_percentages_round_like_kubernetes() -> None:
    ok = [worker(replicas=3), pdb(min_available="50%")]
    blocking = [worker(replicas=3), pdb(min_available="100%")]
    assert check_replicated_has_pdb(ok, PdbConfig()) == []
    assert only(check_replicated_has_pdb(blocking, PdbConfig())).resource == (
        "PodDisruptionBudget 'agent-worker'"
    )


def test_unknown_replicas_are_undecided() -> None:
    [note] = check_replicated_has_pdb([worker(replicas=UNKNOWN)], PdbConfig())
    assert note.undetermined


def test_wire_form_floats_read_as_written() -> None:
    found = only(check_autoscaler_bounds(hpa(min_replicas=2.0, max_replicas=40.0), BoundsConfig()))
    assert "spec.maxReplicas is 40, above the cap 20" in found.message
