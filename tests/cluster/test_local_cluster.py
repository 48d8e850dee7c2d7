"""scripts/local-cluster: a real control plane (etcd, kube-apiserver, controller manager,
scheduler) with KWOK's simulated nodes, on 127.0.0.1, in a state directory of its own.

Each test module that needs a cluster starts one under a temporary AGENT_PLATFORM_STATE
with its own ports, so the user's cluster (and stack) is never touched. In CI missing
binaries fail (`make tools` builds them first); elsewhere these tests skip until then.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "local-cluster"

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


@dataclass
class Cluster:
    state: Path

    def run(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        result = subprocess.run(
            [str(SCRIPT), *args],
            env={**os.environ, "AGENT_PLATFORM_STATE": str(self.state)},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"local-cluster {' '.join(args)}: {result.stdout}\n{result.stderr}")
        return result.stdout + result.stderr

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return self.run("kubectl", *args, stdin=stdin)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def pids(self) -> dict[str, str]:
        run = self.state / "cluster" / "run"
        return {p.stem: p.read_text().strip() for p in run.glob("*.pid")}


@pytest.fixture(scope="module")
def cluster(cluster_built: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("cluster-state"))
    started.run("up")
    yield started
    started.run("delete")


NODE = """
apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations:
    kwok.x-k8s.io/node: fake
    kwok.agent-platform.io/capacity: '{capacity}'
  labels: {{topology.kubernetes.io/zone: zone-a, kubernetes.io/hostname: {name}}}
spec:
  taints: {taints}
"""
CPU_NODE = NODE.format(
    name="kwok-a",
    capacity='{"cpu": "4", "memory": "16Gi", "ephemeral-storage": "100Gi"}',
    taints="[]",
)
GPU_NODE = NODE.format(
    name="kwok-gpu",
    capacity='{"cpu": "4", "memory": "16Gi", "ephemeral-storage": "100Gi", "nvidia.com/gpu": "1"}',
    taints="[{key: nvidia.com/gpu, value: 'true', effect: NoSchedule}]",
)
GPU_POD = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
  containers:
  - name: main
    image: registry.invalid/vllm:1
    resources: {{limits: {{nvidia.com/gpu: "1"}}}}
"""


def _wait(what: str, predicate: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {seconds}s")
        time.sleep(1)


def test_the_api_server_is_ready_with_rbac_and_listens_on_loopback_only(
    cluster: Cluster,
) -> None:
    assert "ok" in cluster.kubectl("get", "--raw", "/readyz")
    ports = dict(
        line.split("=") for line in (cluster.state / "cluster" / "ports").read_text().split()
    )
    kubeconfig = (cluster.state / "cluster" / "kubeconfig").read_text()
    assert f"server: https://127.0.0.1:{ports['API_PORT']}" in kubeconfig
    # RBAC is on: a service account has no rights until a binding grants them.
    denied = cluster.run(
        "kubectl",
        "auth",
        "can-i",
        "list",
        "secrets",
        "--as",
        "system:serviceaccount:default:default",
        check=False,
    )
    assert denied.strip().startswith("no")
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True)
    local_addresses = [line.split()[3] for line in listening.stdout.splitlines() if line.strip()]
    for port in ports.values():
        bound = [address for address in local_addresses if address.endswith(f":{port}")]
        assert bound, f"nothing listens on port {port}"
        assert all(address.startswith("127.0.0.1:") for address in bound), bound


def test_a_simulated_node_becomes_ready_and_the_scheduler_places_pods(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=CPU_NODE)

    def ready() -> bool:
        conditions = cluster.get("node", "kwok-a")["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    _wait("the KWOK node is Ready", ready)
    cluster.kubectl("create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2")

    def available() -> bool:
        status = cluster.get("deployment", "web")["status"]
        return bool(status.get("availableReplicas") == 2)

    _wait("the Deployment is available (controllers and scheduler at work)", available)
    pods = cluster.get("pods", "-l", "app=web")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {"kwok-a"}
    assert {p["status"]["phase"] for p in pods} == {"Running"}


def test_a_second_up_restarts_nothing_and_data_survives_down_and_up(cluster: Cluster) -> None:
    cluster.kubectl("create", "configmap", "kept", "--from-literal=answer=42")
    before = cluster.pids()
    assert set(before) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    cluster.run("up")
    assert cluster.pids() == before
    cluster.run("down")
    assert "stopped" in cluster.run("status")
    assert cluster.pids() == {}
    cluster.run("up")
    assert cluster.get("configmap", "kept")["data"] == {"answer": "42"}


SCALED_OBJECT = """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: worker}}
spec:
  scaleTargetRef: {{name: worker}}
  minReplicaCount: {min_count}
  triggers:
  - type: redis-streams
    metadata: {{stream: agent:tasks, consumerGroup: agent-workers, lagCount: "10"}}
"""


def test_the_operators_crds_come_from_their_modules_and_validate(cluster: Cluster) -> None:
    names = {crd["metadata"]["name"] for crd in cluster.get("crd")["items"]}
    assert {
        "scaledobjects.keda.sh",
        "externalsecrets.external-secrets.io",
        "httproutes.gateway.networking.k8s.io",
        "certificates.cert-manager.io",
        "clusterissuers.cert-manager.io",
    } <= names
    # KEDA's schema is enforced: a string where it declares an integer is refused.
    refused = cluster.run(
        "kubectl", "apply", "-f", "-", stdin=SCALED_OBJECT.format(min_count='"none"'), check=False
    )
    assert "minReplicaCount" in refused
    assert "Invalid value" in refused or "must be of type integer" in refused
    cluster.kubectl("apply", "-f", "-", stdin=SCALED_OBJECT.format(min_count=0))
    assert cluster.get("scaledobject", "worker")["spec"]["minReplicaCount"] == 0


def test_a_node_reports_the_capacity_it_declares_and_gpus_are_scheduled_by_it(
    cluster: Cluster,
) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=GPU_NODE)

    def reported() -> bool:
        return "nvidia.com/gpu" in cluster.get("node", "kwok-gpu")["status"].get("capacity", {})

    _wait("the GPU node reports its GPU", reported)
    capacity = cluster.get("node", "kwok-gpu")["status"]["capacity"]
    assert capacity["nvidia.com/gpu"] == "1"
    assert capacity["cpu"] == "4"
    cluster.kubectl("apply", "-f", "-", stdin=GPU_POD.format(name="gpu-1"))
    cluster.kubectl("apply", "-f", "-", stdin=GPU_POD.format(name="gpu-2"))

    def placed() -> bool:
        return bool(cluster.get("pod", "gpu-1")["spec"].get("nodeName"))

    _wait("the first GPU pod is placed", placed)
    assert cluster.get("pod", "gpu-1")["spec"]["nodeName"] == "kwok-gpu"

    def refused() -> bool:
        conditions = cluster.get("pod", "gpu-2")["status"].get("conditions", [])
        return any("Insufficient nvidia.com/gpu" in c.get("message", "") for c in conditions)

    _wait("the scheduler refuses the GPU pod beyond capacity", refused)
    assert not cluster.get("pod", "gpu-2")["spec"].get("nodeName")
