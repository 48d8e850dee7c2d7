"""The prod stack's Kubernetes layer, deployed by the real engine into the local control
plane: prod's GPU pool (simulated nodes of its instance type, tainted and labelled as on
EKS), vLLM on it, KEDA ScaledObjects, the Gateway, Flagger's Canary objects and analysis
templates, three zones.

How it differs from `Pulumi.prod.yaml`, and why: the AWS parts (VPC, EKS, ElastiCache,
IAM, Secrets Manager) have no local counterpart, so the stack's environment is `local`:
Redis runs in the cluster, secrets come from Pulumi config instead of External Secrets,
and the operators' CRDs come with the control plane (their controllers do not run: no
Flagger makes the `-primary` copies or writes the HTTPRoute here). The
rest is prod's own config, read from the committed stack file, so the variant cannot
drift from it. (tests/cluster/test_cluster_manifests.py admits the dev and prod programs'
every Kubernetes object, ExternalSecrets included, without the substitutions.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from deployed import NAMESPACE, REPO, DeployedStack, available

pytestmark = [pytest.mark.cluster, pytest.mark.engine, pytest.mark.timeout(900)]

GPU = "nvidia.com/gpu"
# What prod has that a local stack cannot: the AWS parts (Karpenter launches EC2 nodes;
# the simulated GPU nodes stand for its NodePool here).
AWS_ONLY = ("aws:region", "agent-platform:cluster", "agent-platform:karpenter")


def prod_shaped_config() -> dict[str, Any]:
    prod = yaml.safe_load((REPO / "Pulumi.prod.yaml").read_text())["config"]
    config = {key: value for key, value in prod.items() if key not in AWS_ONLY}
    config["agent-platform:environment"] = "local"
    config["agent-platform:redis"] = {"mode": "in-cluster", "storageGi": 8}
    zones = prod["agent-platform:cluster"]["availabilityZones"]
    config["agent-platform:local"] = {
        "target": "cluster",
        "nodes": {"count": 4, "zones": zones, "cpu": "4", "memory": "16Gi"},
    }
    return config


@pytest.fixture(scope="module")
def stack(
    engine_built: None, cluster_built: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeployedStack]:
    # Under prod's policy-pack config, as prod itself is previewed and deployed.
    deployed = DeployedStack(
        tmp_path_factory.mktemp("prod-shaped"), REPO / "policies" / "config" / "prod.json"
    )
    document = {"config": prod_shaped_config()}
    deployed.stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    deployed.pulumi("up")
    # KEDA's operator does not run here: set vLLM's count as its ScaledObject would under
    # load, one replica per GPU node.
    deployed.kubectl("scale", "deployment", "llm", "-n", NAMESPACE, "--replicas=2")
    deployed.kubectl("rollout", "status", "deployment", "llm", "-n", NAMESPACE, "--timeout=120s")
    yield deployed
    deployed.pulumi("destroy")
    deployed.script("local-cluster", "delete")


def _gpus(pod: dict[str, Any]) -> int:
    return sum(
        int(c.get("resources", {}).get("requests", {}).get(GPU, 0))
        for c in pod["spec"]["containers"]
    )


def test_every_workload_is_available_on_prods_shape(stack: DeployedStack) -> None:
    workloads = stack.items("deployments") + stack.items("statefulsets")
    names = {w["metadata"]["name"] for w in workloads}
    assert {"agent-api", "agent-worker", "llm", "redis"} <= names
    assert [w["metadata"]["name"] for w in workloads if not available(w)] == []
    daemons = stack.get("daemonsets", "-n", "gpu-system")["items"]
    assert {d["metadata"]["name"] for d in daemons} == {
        "nvidia-device-plugin-gpu",
        "dcgm-exporter-gpu",
    }
    for daemon in daemons:
        # One per GPU node (prod's desiredSize: 2), none elsewhere.
        assert daemon["status"]["desiredNumberScheduled"] == 2
        assert daemon["status"]["numberReady"] == 2


def test_gpu_pods_land_on_gpu_nodes_and_nothing_else_does(stack: DeployedStack) -> None:
    nodes = {n["metadata"]["name"]: n for n in stack.get("nodes")["items"]}
    gpu_nodes = {name for name, n in nodes.items() if GPU in n["status"]["capacity"]}
    # prod's pool: desiredSize 2 of g5.2xlarge, one A10G, 8 vCPUs and 32 GiB each.
    assert len(gpu_nodes) == 2
    for name in gpu_nodes:
        capacity = nodes[name]["status"]["capacity"]
        assert (capacity[GPU], capacity["cpu"], capacity["memory"]) == ("1", "8", "32Gi")
        assert nodes[name]["spec"]["taints"] == [
            {"key": GPU, "value": "true", "effect": "NoSchedule"}
        ]
    pods = stack.get("pods", "-A")["items"]
    gpu_pods = [p for p in pods if _gpus(p)]
    # vLLM at two replicas of one GPU each.
    assert len(gpu_pods) == 2
    assert {p["spec"]["nodeName"] for p in gpu_pods} == gpu_nodes
    # Only the GPU pool's own node agents share the GPU nodes with vLLM.
    others = {
        p["metadata"]["namespace"]
        for p in pods
        if not _gpus(p) and p["spec"]["nodeName"] in gpu_nodes
    }
    assert others == {"gpu-system"}
    zones = {
        nodes[p["spec"]["nodeName"]]["metadata"]["labels"]["topology.kubernetes.io/zone"]
        for p in pods
    }
    assert len(zones) == 3


def test_a_gpu_pod_beyond_the_pools_capacity_stays_pending(stack: DeployedStack) -> None:
    llm = stack.get("deployment", "llm", "-n", NAMESPACE)
    # vLLM's own pod spec (GPU request, toleration, node selector), a third replica's.
    spec: dict[str, Any] = {
        **llm["spec"]["template"]["spec"],
        "volumes": [],
        "initContainers": [],
    }
    for container in spec["containers"]:
        container["volumeMounts"] = []
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "one-gpu-too-many", "namespace": NAMESPACE},
        "spec": spec,
    }
    manifest = stack.state / "one-gpu-too-many.yaml"
    manifest.write_text(yaml.safe_dump(pod))
    stack.kubectl("apply", "-f", str(manifest))
    try:
        condition = _wait_unschedulable(stack, "one-gpu-too-many")
        assert f"Insufficient {GPU}" in condition["message"]
    finally:
        stack.kubectl("delete", "pod", "one-gpu-too-many", "-n", NAMESPACE, "--wait=false")


def _wait_unschedulable(stack: DeployedStack, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pod = stack.get("pod", name, "-n", NAMESPACE)
        for condition in pod["status"].get("conditions", []):
            if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return dict(condition)
        assert pod["status"]["phase"] == "Pending"
        time.sleep(1)
    pytest.fail(f"{name} was never reported unschedulable")


def test_scaled_objects_drive_the_api_workers_and_vllm(stack: DeployedStack) -> None:
    scaled = {s["metadata"]["name"]: s["spec"] for s in stack.items("scaledobjects.keda.sh")}
    # Flagger copies the agent's to `-primary` ones when it makes the primaries.
    assert {s["scaleTargetRef"]["name"] for s in scaled.values()} == {
        "agent-api",
        "agent-worker",
        "llm",
    }
    # vLLM's bounds are prod's llm.autoscaling.
    assert (scaled["llm"]["minReplicaCount"], scaled["llm"]["maxReplicaCount"]) == (1, 4)
    for spec in scaled.values():
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["triggers"], spec


def test_flagger_releases_through_the_https_gateway(stack: DeployedStack) -> None:
    assert stack.items("ingresses") == []
    # Flagger writes the route; the stack declares none of its own.
    assert stack.items("httproutes.gateway.networking.k8s.io") == []
    (gateway,) = stack.items("gateways.gateway.networking.k8s.io")
    canaries = {c["metadata"]["name"]: c["spec"] for c in stack.items("canaries.flagger.app")}
    assert set(canaries) == {"agent-api", "agent-worker"}
    api = canaries["agent-api"]
    # (The CRD's defaults add the group and kind.)
    (ref,) = api["service"]["gatewayRefs"]
    assert (ref["kind"], ref["name"], ref["namespace"]) == (
        "Gateway",
        gateway["metadata"]["name"],
        NAMESPACE,
    )
    deployments = {d["metadata"]["name"] for d in stack.items("deployments")}
    for spec in canaries.values():
        assert spec["targetRef"]["name"] in deployments
        for metric in spec["analysis"]["metrics"]:
            assert stack.get(
                "metrictemplates.flagger.app", metric["templateRef"]["name"], "-n", NAMESPACE
            )
    (listener,) = gateway["spec"]["listeners"]
    assert (listener["protocol"], listener["port"]) == ("HTTPS", 443)
    assert listener["tls"]["certificateRefs"][0]["name"] == "agent-api-tls"
    # The certificate's Certificate, admitted by cert-manager's CRD (whose controller does
    # not run here: the Secret itself is never written), signed by the stack's CA Issuer.
    (certificate,) = [
        c
        for c in stack.items("certificates.cert-manager.io")
        if c["spec"]["secretName"] == "agent-api-tls"
    ]
    assert certificate["spec"]["dnsNames"] == [listener["hostname"]]
    issuers = {i["metadata"]["name"]: i["spec"] for i in stack.items("issuers.cert-manager.io")}
    assert "ca" in issuers[certificate["spec"]["issuerRef"]["name"]]
    gateway_class = stack.get(
        "gatewayclasses.gateway.networking.k8s.io", gateway["spec"]["gatewayClassName"]
    )
    assert (
        gateway_class["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    )
    ref = gateway_class["spec"]["parametersRef"]
    proxy = stack.get("envoyproxies.gateway.envoyproxy.io", ref["name"], "-n", ref["namespace"])
    annotations = proxy["spec"]["provider"]["kubernetes"]["envoyService"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
