"""The `local` stack deployed by the real engine into the local control plane, as `make up`
does: every object admitted by the API server, placed by the scheduler, reconciled by the
controllers, and read back from the API.

The stack and its cluster live in a temporary state directory (their own ports,
certificates and etcd), with the committed stack definition; the user's cluster, stack
and build/ are never touched.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from deployed import NAMESPACE, REPO, DeployedStack, available

pytestmark = [pytest.mark.cluster, pytest.mark.engine, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def stack(
    engine_built: None, cluster_built: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeployedStack]:
    deployed = DeployedStack(tmp_path_factory.mktemp("cluster-stack"))
    document = yaml.safe_load((REPO / "Pulumi.local.yaml").read_text())
    # The committed stack and its simulated nodes; the kubeconfig is this cluster's.
    nodes = document["config"]["agent-platform:local"]["nodes"]
    document["config"]["agent-platform:local"] = {"target": "cluster", "nodes": nodes}
    deployed.stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    deployed.pulumi("up")
    yield deployed
    deployed.pulumi("destroy")
    deployed.script("local-cluster", "delete")


def test_every_workload_is_available_and_a_second_up_changes_nothing(stack: DeployedStack) -> None:
    workloads = stack.items("deployments") + stack.items("statefulsets")
    names = {w["metadata"]["name"] for w in workloads}
    assert {"agent-api", "agent-worker", "llm", "prometheus", "redis"} <= names
    assert [w["metadata"]["name"] for w in workloads if not available(w)] == []
    again = stack.pulumi("up")
    summary = again.stdout.split("Resources:")[1].split("Duration")[0]
    assert "unchanged" in summary
    assert not any(mark in summary for mark in ("+ ", "~ ", "- ", "+-")), summary
    stack.pulumi("preview", "--expect-no-changes")


def test_pods_are_spread_over_the_zones_and_claims_bound(stack: DeployedStack) -> None:
    nodes = {n["metadata"]["name"]: n for n in stack.get("nodes")["items"]}
    zones = {
        name: n["metadata"]["labels"]["topology.kubernetes.io/zone"] for name, n in nodes.items()
    }
    assert len(set(zones.values())) >= 2
    pods = stack.items("pods")
    assert pods
    assert all(p["status"]["phase"] == "Running" for p in pods), [
        (p["metadata"]["name"], p["status"]["phase"]) for p in pods
    ]
    api_zones = Counter(
        zones[p["spec"]["nodeName"]]
        for p in pods
        if p["metadata"]["labels"].get("app.kubernetes.io/name") == "agent-api"
    )
    assert len(api_zones) == 2, "the API's two replicas share a zone"
    claims = stack.items("persistentvolumeclaims")
    assert claims
    assert {c["status"]["phase"] for c in claims} == {"Bound"}


def test_disruption_budgets_and_autoscalers_target_the_workloads(stack: DeployedStack) -> None:
    budgets = {b["metadata"]["name"]: b["status"] for b in stack.items("poddisruptionbudgets")}
    # Two replicas, minAvailable 1: one may go. The single Redis may not.
    assert budgets["agent-api"]["disruptionsAllowed"] == 1
    assert budgets["agent-worker"]["disruptionsAllowed"] == 1
    assert budgets["redis"]["disruptionsAllowed"] == 0
    targets = {
        h["metadata"]["name"]: h["spec"]["scaleTargetRef"]
        for h in stack.items("horizontalpodautoscalers")
    }
    assert targets == {
        "agent-api": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "agent-api"},
        "agent-worker": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "agent-worker"},
    }


def test_drift_is_found_by_refresh_and_repaired_by_up(stack: DeployedStack) -> None:
    stack.kubectl("delete", "configmap", "agent-settings", "-n", NAMESPACE)
    stack.kubectl("delete", "service", "llm", "-n", NAMESPACE)
    refreshed = stack.pulumi("refresh")
    assert "deleted" in refreshed.stdout
    stack.pulumi("up")
    assert stack.get("configmap", "agent-settings", "-n", NAMESPACE)["data"]["AGENT_REDIS_URL"]
    assert stack.get("service", "llm", "-n", NAMESPACE)["spec"]["ports"]
    stack.pulumi("preview", "--expect-no-changes")


def test_no_secret_value_in_the_clusters_objects_the_state_or_the_logs(
    stack: DeployedStack,
) -> None:
    config = ["--stack", "local", "--config-file", str(stack.state / "local" / "Pulumi.local.yaml")]
    password = stack.pulumi("pulumi", "config", "get", "redisPassword", *config).stdout.strip()
    keys = json.loads(stack.pulumi("pulumi", "config", "get", "appApiKeys", *config).stdout)
    needles = [password, *keys.values()]
    needles += [base64.b64encode(n.encode()).decode() for n in needles]
    # Every object but the Secrets, which hold the values by design.
    kinds = "configmaps,deployments,statefulsets,services,pods,replicasets,events"
    objects = stack.kubectl("get", kinds, "-A", "-o", "json")
    files = [p for p in (stack.state / "local" / "backend").rglob("*") if p.is_file()]
    files += [p for p in (stack.state / "cluster" / "logs").rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in files), "the state was not searched"
    for needle in needles:
        assert needle not in objects
        for path in files:
            assert needle not in path.read_text(errors="replace"), f"a secret value is in {path}"
    redis_auth = stack.get("secret", "redis-auth", "-n", NAMESPACE)
    assert base64.b64encode(password.encode()).decode() in json.dumps(redis_auth)


def _with_canary(stack: DeployedStack, canary: dict[str, object] | None) -> None:
    document = yaml.safe_load(stack.stack_file.read_text())
    if canary is None:
        document["config"].pop("agent-platform:canary", None)
    else:
        document["config"]["agent-platform:canary"] = canary
    stack.stack_file.write_text(yaml.safe_dump(document, sort_keys=False))


def _track_images(stack: DeployedStack) -> dict[str, set[str]]:
    """Track -> the images of the agent's ReplicaSets that have pods."""
    images: dict[str, set[str]] = {}
    for replica_set in stack.items("replicasets"):
        track = replica_set["metadata"]["labels"].get("agent-platform.io/track")
        if track is None or replica_set["status"].get("replicas", 0) == 0:
            continue
        containers = replica_set["spec"]["template"]["spec"]["containers"]
        images.setdefault(track, set()).update(c["image"] for c in containers)
    return images


def test_a_canary_rolls_out_by_config_and_rolls_back(stack: DeployedStack) -> None:
    _with_canary(stack, {"version": "0.2.0", "imageTag": "0.2.0", "weight": 10})
    stack.pulumi("up")
    deployments = {d["metadata"]["name"]: d for d in stack.items("deployments")}
    for name in ("agent-api-canary", "agent-worker-canary"):
        assert available(deployments[name]), name
    images = _track_images(stack)
    assert images["canary"] == {"agent-platform/agent-app:0.2.0"}
    assert images["stable"] == {"agent-platform/agent-app:0.1.0"}
    # Both tracks behind the one Service: its endpoints hold pods of each.
    slices = stack.get(
        "endpointslices", "-n", NAMESPACE, "-l", "kubernetes.io/service-name=agent-api"
    )
    tracks = {
        stack.get("pod", e["targetRef"]["name"], "-n", NAMESPACE)["metadata"]["labels"][
            "agent-platform.io/track"
        ]
        for s in slices["items"]
        for e in s.get("endpoints") or []
    }
    assert tracks == {"stable", "canary"}

    _with_canary(stack, None)
    stack.pulumi("up")
    names = {d["metadata"]["name"] for d in stack.items("deployments")}
    assert not {n for n in names if n.endswith("-canary")}
    assert set(_track_images(stack)) == {"stable"}


def test_destroy_leaves_no_object_of_the_stack(tmp_path: Path, stack: DeployedStack) -> None:
    """Last in the module: the fixture's own teardown then finds nothing to do."""
    stack.pulumi("destroy")
    namespaces = {n["metadata"]["name"] for n in stack.get("namespaces")["items"]}
    assert NAMESPACE not in namespaces
    assert stack.get("nodes")["items"] == []
    assert stack.get("persistentvolumes")["items"] == []
    assert [c["metadata"]["name"] for c in stack.get("storageclasses")["items"]] == []
    left = json.loads(stack.pulumi("pulumi", "stack", "export", "--stack", "local").stdout)
    assert left["deployment"].get("resources") in (None, [])
