"""LocalStorage: a default StorageClass and a PersistentVolume bound to each claim."""

from __future__ import annotations

import pytest
from component_mocks import evaluate, provider

from components.local_storage import LocalStorage, LocalStorageArgs
from components.values import VolumeClaim

STORAGE = "agent-platform:cluster:LocalStorage"
PV = "kubernetes:core/v1:PersistentVolume"


def test_every_claim_gets_a_retained_volume_bound_to_it_in_advance() -> None:
    claims = [
        VolumeClaim(namespace="agents", name="data-redis-0", size_gi=2),
        VolumeClaim(namespace="agents", name="prometheus-data", size_gi=5),
    ]
    _, graph = evaluate(
        lambda: LocalStorage("local", LocalStorageArgs(claims=claims, provider=provider()))
    )
    component = graph.component(STORAGE)
    assert graph.kinds(component) == [
        (PV, "local-agents-data-redis-0"),
        (PV, "local-agents-prometheus-data"),
        ("kubernetes:storage.k8s.io/v1:StorageClass", "local-class"),
    ]
    storage_class = graph.named("kubernetes:storage.k8s.io/v1:StorageClass", "local-class").inputs
    assert storage_class["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "true"
    }
    assert storage_class["provisioner"] == "kubernetes.io/no-provisioner"
    assert storage_class["reclaimPolicy"] == "Retain"
    volume = graph.named(PV, "local-agents-prometheus-data").inputs["spec"]
    assert volume["claimRef"] == {"namespace": "agents", "name": "prometheus-data"}
    assert volume["capacity"] == {"storage": "5Gi"}
    assert volume["persistentVolumeReclaimPolicy"] == "Retain"
    assert volume["storageClassName"] == "local-static"
    assert graph.outputs_of(component) == {"storageClass": "local-static"}


def test_a_claim_needs_a_positive_size() -> None:
    with pytest.raises(ValueError, match=r"size_gi\n  Input should be greater than 0"):
        VolumeClaim(namespace="agents", name="data", size_gi=0)
