"""The resource graph each stack registers, under Pulumi's mocks, in `up` and `preview`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.output import Unknown
from pulumi.runtime.rpc import is_rpc_secret

from components.kube import GPU_POOL_LABEL, GPU_RESOURCE, GPU_TAINT_KEY, NAME_LABEL
from stacks.outputs import OUTPUT_KEYS, StackOutputs
from stacks.simulate import SimulatedResource, Simulation, simulate

Simulate = Callable[..., Simulation]
MODES = [pytest.param(False, id="up"), pytest.param(True, id="preview")]
STACKS = ["local", "dev", "prod"]
POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


# prod with the manual release flow: progressive delivery off, a 10% canary by config.
MANUAL_CANARY: dict[str, Any] = {
    "agent-platform:progressiveDelivery": {"enabled": False},
    "agent-platform:canary": {"version": "1.5.0", "imageTag": "1.5.0", "weight": 10},
}


def _pod_spec(resource: SimulatedResource) -> dict[str, Any]:
    spec: dict[str, Any] = resource.inputs["spec"]["template"]["spec"]
    return spec


def _workloads(sim: Simulation) -> Iterator[SimulatedResource]:
    for resource in sim.resources:
        if resource.type.startswith("kubernetes:apps/v1:") and resource.type.endswith(POD_KINDS):
            yield resource


@pytest.mark.parametrize("preview", MODES)
@pytest.mark.parametrize("stack", STACKS)
def test_every_resource_belongs_to_a_component(
    simulated: Simulate, stack: str, preview: bool
) -> None:
    sim = simulated(stack, preview)
    components = {r.urn: r for r in sim.resources if not r.custom}
    assert components, "the program registered no components"
    for resource in sim.resources:
        if not resource.custom:
            assert resource.type.startswith("agent-platform:"), resource.type
            assert resource.type.count(":") == 2, (
                f"{resource.type} is not agent-platform:<area>:<Name>"
            )
            continue
        assert resource.parent_urn in components, (
            f"{resource.type} {resource.name} has no component parent"
        )


@pytest.mark.parametrize("preview", MODES)
@pytest.mark.parametrize("stack", STACKS)
def test_exports_exactly_the_outputs_contract(
    simulated: Simulate, stack: str, preview: bool
) -> None:
    sim = simulated(stack, preview)
    assert tuple(sim.outputs) == OUTPUT_KEYS
    if not preview:
        StackOutputs.model_validate(sim.outputs)


def test_preview_leaves_cloud_computed_outputs_unknown(simulated: Simulate) -> None:
    preview = simulated("prod", True).outputs
    assert isinstance(preview["redisEndpoint"], Unknown)
    assert isinstance(preview["imageRef"], Unknown)
    # What config alone decides is known before anything exists (prod's releases are
    # Flagger's: no canary in the config).
    assert preview["canary"] == {"version": None, "weight": 0}
    assert preview["namespace"] == "agents"


@pytest.mark.parametrize("stack", STACKS)
def test_secret_values_stay_secret(simulated: Simulate, stack: str) -> None:
    sim = simulated(stack)
    placeholders = ("simulated-redis-password", "simulated-api-key", "simulated-model-api-key")
    for resource in sim.resources:
        if resource.type == "kubernetes:core/v1:Secret":
            # The SDK lifts secretness to the enclosing map when any value is secret.
            data = resource.inputs["stringData"]
            assert is_rpc_secret(data), f"Secret {resource.name} data is not a Pulumi secret"
            continue
        # Outside Secrets, a secret value may only appear wrapped as a Pulumi secret.
        _assert_no_plain(resource.inputs, placeholders, f"{resource.type} {resource.name}")


def _assert_no_plain(value: Any, needles: tuple[str, ...], where: str) -> None:
    if is_rpc_secret(value):
        return
    if isinstance(value, dict):
        for item in value.values():
            _assert_no_plain(item, needles, where)
    elif isinstance(value, list):
        for item in value:
            _assert_no_plain(item, needles, where)
    elif isinstance(value, str):
        assert not any(n in value for n in needles), f"plaintext secret in {where}"


def test_prod_secrets_go_through_secrets_manager(simulated: Simulate) -> None:
    sim = simulated("prod")
    assert sim.of_type("kubernetes:core/v1:Secret") == []
    versions = sim.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    assert len(versions) == 3
    assert all(is_rpc_secret(v.inputs["secretString"]) for v in versions)
    for secret in sim.of_type("aws:secretsmanager/secret:Secret"):
        assert secret.inputs["kmsKeyId"], f"{secret.name} has no KMS key"
    (external,) = sim.of_type("kubernetes:external-secrets.io/v1beta1:ExternalSecret")
    keys = sorted(item["secretKey"] for item in external.inputs["spec"]["data"])
    assert keys == ["api-keys-sha256", "llm-api-key", "redis-password"]
    auth = sim.named("aws:elasticache/replicationGroup:ReplicationGroup", "queue-rg").inputs[
        "authToken"
    ]
    assert is_rpc_secret(auth)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_gpu_pods_tolerate_the_taint_and_select_the_gpu_pool(
    simulated: Simulate, stack: str
) -> None:
    sim = simulated(stack)
    gpu_workloads = 0
    for workload in _workloads(sim):
        spec = _pod_spec(workload)
        requests_gpu = any(
            GPU_RESOURCE in c["resources"].get("limits", {}) for c in spec["containers"]
        )
        tolerates = any(t["key"] == GPU_TAINT_KEY for t in spec.get("tolerations", []))
        if requests_gpu:
            gpu_workloads += 1
            assert tolerates, f"{workload.name} asks for a GPU but does not tolerate the taint"
            assert spec["nodeSelector"] == {GPU_POOL_LABEL: "gpu"}
            for container in spec["containers"]:
                resources = container["resources"]
                assert resources["requests"][GPU_RESOURCE] == resources["limits"][GPU_RESOURCE]
        elif tolerates:
            name = workload.inputs["metadata"]["name"]
            assert workload.type == "kubernetes:apps/v1:DaemonSet", (
                f"{name} tolerates GPUs without using one"
            )
            assert name.startswith(("nvidia-device-plugin-", "dcgm-exporter-"))
    assert gpu_workloads == 1, "expected exactly the vLLM server to ask for GPUs"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_gpu_pools_are_tainted_karpenter_node_pools(simulated: Simulate, stack: str) -> None:
    """dev and prod run Karpenter: each GPU pool is a NodePool, no managed GPU group."""
    sim = simulated(stack)
    assert sim.config.karpenter.enabled
    assert not [
        n
        for n in sim.of_type("aws:eks/nodeGroup:NodeGroup")
        if n.inputs.get("amiType", "").endswith("NVIDIA")
    ]
    pools = sim.of_type("kubernetes:karpenter.sh/v1:NodePool")
    assert len(pools) == len(sim.config.gpu_pools)
    for pool in pools:
        template = pool.inputs["spec"]["template"]
        assert template["spec"]["taints"] == [
            {"key": GPU_TAINT_KEY, "value": "true", "effect": "NoSchedule"}
        ]
        assert template["metadata"]["labels"][GPU_POOL_LABEL] == "gpu"
        assert set(pool.inputs["spec"]["limits"]) == {"nvidia.com/gpu", "cpu"}


@pytest.mark.parametrize("preview", MODES)
@pytest.mark.parametrize("stack", STACKS)
def test_scaled_deployments_set_no_replicas(simulated: Simulate, stack: str, preview: bool) -> None:
    sim = simulated(stack, preview)
    kind = (
        "keda.sh/v1alpha1:ScaledObject"
        if sim.config.autoscaling.keda
        else "autoscaling/v2:HorizontalPodAutoscaler"
    )
    scalers = sim.of_type(f"kubernetes:{kind}")
    targets = {s.inputs["spec"]["scaleTargetRef"]["name"] for s in scalers}
    deployments = {
        d.inputs["metadata"]["name"]: d for d in sim.of_type("kubernetes:apps/v1:Deployment")
    }
    expected = {"agent-api", "agent-worker"} | (
        {"agent-api-canary", "agent-worker-canary"} if sim.config.canary else set()
    )
    # vLLM, where it autoscales, is one more.
    expected |= {"llm"} if sim.config.llm.autoscaling else set()
    assert targets == expected
    for target in targets:
        assert "replicas" not in deployments[target].inputs["spec"], f"{target} sets replicas"


def test_keda_scales_workers_on_the_task_streams_backlog(simulated: Simulate) -> None:
    sim = simulated("dev")
    scaled = "kubernetes:keda.sh/v1alpha1:ScaledObject"
    worker = sim.named(scaled, "agent-worker-stable-scaledobject").inputs["spec"]
    cpu, backlog, wake = worker["triggers"]
    assert cpu["type"] == "cpu"
    # The undelivered backlog (the group's lag, the app's agent_queue_depth), not the
    # pending entries, which never counted what no worker had taken yet.
    assert backlog["type"] == "redis-streams"
    assert backlog["metadata"]["stream"] == "agent:tasks"
    assert backlog["metadata"]["consumerGroup"] == "agent-workers"
    assert backlog["metadata"]["lagCount"] == "20"
    assert backlog["metadata"]["activationLagCount"] == "1"
    assert backlog["authenticationRef"] == {"name": "redis-queue"}
    # dev lets the workers scale to zero; any entry in the stream wakes one.
    assert worker["minReplicaCount"] == 0
    assert (wake["name"], wake["metadata"]["streamLength"]) == ("wake-from-zero", "120")
    # The API keeps its floor, and so does every prod worker.
    api = sim.named(scaled, "agent-api-stable-scaledobject").inputs["spec"]
    assert api["minReplicaCount"] == 2
    assert [t.get("name") for t in api["triggers"]] == [None, "backlog"]
    prod = simulate("prod", overrides=MANUAL_CANARY)
    for track in ("stable", "canary"):
        spec = prod.named(scaled, f"agent-worker-{track}-scaledobject").inputs["spec"]
        assert spec["minReplicaCount"] >= 1
        assert "pendingEntriesCount" not in str(spec["triggers"])


def test_local_hpa_scales_on_cpu_and_memory_with_behaviour(simulated: Simulate) -> None:
    sim = simulated("local")
    hpa = sim.named(
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "agent-api-stable-hpa"
    ).inputs["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 4)
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu", "memory"]
    assert set(hpa["behavior"]) == {"scaleUp", "scaleDown"}


def test_prod_canary_takes_exactly_its_weight_through_the_gateway() -> None:
    sim = simulate("prod", overrides=MANUAL_CANARY)
    assert sim.of_type("kubernetes:networking.k8s.io/v1:Ingress") == []
    assert sim.of_type("kubernetes:helm.sh/v3:Release") != []
    charts = {r.inputs["chart"] for r in sim.of_type("kubernetes:helm.sh/v3:Release")}
    assert "oci://docker.io/envoyproxy/gateway-helm" in charts
    assert not any("ingress-nginx" in chart for chart in charts)
    route = sim.named("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "agent-route").inputs
    (rule,) = route["spec"]["rules"]
    weights = {b["name"]: b["weight"] for b in rule["backendRefs"]}
    assert weights == {"agent-api-stable": 90, "agent-api-canary": 10}
    gateway = sim.named("kubernetes:gateway.networking.k8s.io/v1:Gateway", "agent-gateway-gateway")
    (listener,) = gateway.inputs["spec"]["listeners"]
    assert (listener["protocol"], listener["port"]) == ("HTTPS", 443)
    assert listener["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "agent-api-tls"}]
    assert sim.outputs["agentApiEndpoint"] == "https://agents.internal.example.com"
    # prod's certificate comes from cert-manager (the stack's own CA) into that Secret.
    assert "oci://quay.io/jetstack/charts/cert-manager" in charts
    certificate = sim.named(
        "kubernetes:cert-manager.io/v1:Certificate", "agent-gateway-tls-certificate"
    )
    assert certificate.inputs["spec"]["secretName"] == "agent-api-tls"
    assert certificate.inputs["spec"]["dnsNames"] == ["agents.internal.example.com"]
    assert certificate.inputs["spec"]["issuerRef"]["kind"] == "Issuer"
    versions = {
        d.inputs["metadata"]["name"]: d.inputs["spec"]["template"]["metadata"]["labels"][
            "app.kubernetes.io/version"
        ]
        for d in sim.of_type("kubernetes:apps/v1:Deployment")
        if d.inputs["metadata"]["name"].startswith("agent-api")
    }
    assert versions == {"agent-api": "1.4.0", "agent-api-canary": "1.5.0"}
    assert sim.outputs["canary"] == {"version": "1.5.0", "weight": 10}


@pytest.mark.parametrize(
    "canary",
    [
        pytest.param(None, id="canary-removed"),
        {"version": "1.5.0", "imageTag": "1.5.0", "weight": 0},
    ],
)
def test_rollback_removes_every_canary_resource(canary: dict[str, Any] | None) -> None:
    from stacks.simulate import simulate

    sim = simulate("prod", overrides={**MANUAL_CANARY, "agent-platform:canary": canary})
    names = [r.name for r in sim.resources]
    assert not [n for n in names if "canary" in n]
    assert sim.outputs["canary"] == {"version": None, "weight": 0}


def test_without_ingress_the_split_is_a_replica_ratio() -> None:
    from stacks.simulate import simulate

    sim = simulate(
        "local",
        overrides={
            "agent-platform:canary": {"version": "0.2.0", "imageTag": "0.2.0", "weight": 20},
            "agent-platform:autoscaling": {"keda": False, "minReplicas": 4, "maxReplicas": 8},
        },
    )
    bounds = {
        h.inputs["spec"]["scaleTargetRef"]["name"]: (
            h.inputs["spec"]["minReplicas"],
            h.inputs["spec"]["maxReplicas"],
        )
        for h in sim.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
    }
    assert bounds["agent-api"] == (4, 8)
    # 20% of traffic next to 4..8 stable pods: 1..2 canary pods (1/(4+1) = 20%).
    assert bounds["agent-api-canary"] == (1, 2)
    shared = sim.named("kubernetes:core/v1:Service", "agent-api").inputs["spec"]["selector"]
    assert "agent-platform.io/track" not in shared, "the shared Service must reach both tracks"


@pytest.mark.parametrize("stack", ["local", "dev"])
def test_redis_admits_only_agent_pods_and_kedas_scaler(simulated: Simulate, stack: str) -> None:
    sim = simulated(stack)
    policy = sim.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", "queue-netpol").inputs[
        "spec"
    ]
    assert policy["podSelector"]["matchLabels"][NAME_LABEL] == "redis"
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    peer, *others = rule["from"]
    # Where KEDA scales the workers, its operator's namespace reads the stream; no CIDR.
    expected = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}]
    assert others == (expected if sim.config.autoscaling.keda else [])
    assert set(peer) == {"podSelector"}, "no namespace-wide or CIDR peers"
    (expression,) = peer["podSelector"]["matchExpressions"]
    assert expression == {
        "key": NAME_LABEL,
        "operator": "In",
        "values": ["agent-api", "agent-worker"],
    }
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    agent_pods = {
        d.inputs["spec"]["template"]["metadata"]["labels"][NAME_LABEL]
        for d in sim.of_type("kubernetes:apps/v1:Deployment")
    }
    assert {"agent-api", "agent-worker"} <= agent_pods


def test_prod_elasticache_admits_only_the_node_security_group(simulated: Simulate) -> None:
    sim = simulated("prod")
    group = sim.named("aws:ec2/securityGroup:SecurityGroup", "queue-sg").inputs
    (rule,) = group["ingress"]
    assert (rule["fromPort"], rule["toPort"]) == (6379, 6379)
    assert rule["securityGroups"] == ["sg-cluster"]
    assert not rule.get("cidrBlocks")
    cache = sim.named("aws:elasticache/replicationGroup:ReplicationGroup", "queue-rg").inputs
    assert cache["atRestEncryptionEnabled"]
    assert cache["transitEncryptionEnabled"]
    assert cache["multiAzEnabled"]
    assert cache["automaticFailoverEnabled"]


def test_prod_cluster_is_private_encrypted_and_logged(simulated: Simulate) -> None:
    sim = simulated("prod")
    (cluster,) = sim.of_type("aws:eks/cluster:Cluster")
    assert cluster.inputs["vpcConfig"]["endpointPublicAccess"] is False
    assert cluster.inputs["encryptionConfig"]["resources"] == ["secrets"]
    assert set(cluster.inputs["enabledClusterLogTypes"]) >= {"api", "audit", "authenticator"}
    assert len(sim.of_type("aws:ec2/natGateway:NatGateway")) == 3
    assert len({s.inputs["availabilityZone"] for s in sim.of_type("aws:ec2/subnet:Subnet")}) == 3
    assert sim.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")


def test_dev_spreads_over_two_zones_with_one_nat(simulated: Simulate) -> None:
    sim = simulated("dev")
    assert len({s.inputs["availabilityZone"] for s in sim.of_type("aws:ec2/subnet:Subnet")}) == 2
    assert len(sim.of_type("aws:ec2/natGateway:NatGateway")) == 1
    (cluster,) = sim.of_type("aws:eks/cluster:Cluster")
    assert cluster.inputs["vpcConfig"]["endpointPublicAccess"] is True


@pytest.mark.parametrize("stack", STACKS)
def test_workloads_run_restricted_with_probes_and_limits(simulated: Simulate, stack: str) -> None:
    sim = simulated(stack)
    for workload in _workloads(sim):
        name = workload.inputs["metadata"]["name"]
        if name.startswith(("nvidia-device-plugin-", "dcgm-exporter-")):
            continue  # GPU node infrastructure: checked by the policy pack's allowlist
        for container in _pod_spec(workload)["containers"]:
            security = container["securityContext"]
            assert security["runAsNonRoot"], name
            assert security["readOnlyRootFilesystem"], name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            assert container["livenessProbe"] != container["readinessProbe"], name


def test_agent_pods_get_settings_and_secrets_by_reference(simulated: Simulate) -> None:
    sim = simulated("local")
    api = sim.named("kubernetes:apps/v1:Deployment", "agent-api-stable")
    (container,) = _pod_spec(api)["containers"]
    env = {e["name"]: e for e in container["env"]}

    def secret_files(pod: dict[str, Any]) -> dict[str, str]:
        (volume,) = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == "agent-secrets"
        return {i["path"]: i["key"] for i in volume["secret"]["items"]}

    # Secrets are files in a read-only volume, none an environment variable.
    assert not [n for n, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})]
    # The model's key goes to the workers alone, the tenants' key hashes to the API alone.
    assert secret_files(_pod_spec(api)) == {
        "AGENT_REDIS_PASSWORD": "redis-password",
        "AGENT_API_KEYS_SHA256": "api-keys-sha256",
    }
    assert env["AGENT_RELEASE_TRACK"]["value"] == "stable"
    assert env["AGENT_PORT"]["value"] == "8080"
    worker = sim.named("kubernetes:apps/v1:Deployment", "agent-worker-stable")
    (worker_container,) = _pod_spec(worker)["containers"]
    worker_env = {e["name"]: e for e in worker_container["env"]}
    assert worker_env["AGENT_WORKER_PORT"]["value"] == "8081"
    assert not [n for n, e in worker_env.items() if "secretKeyRef" in e.get("valueFrom", {})]
    assert secret_files(_pod_spec(worker)) == {
        "AGENT_REDIS_PASSWORD": "redis-password",
        "AGENT_LLM_API_KEY": "llm-api-key",
    }
    assert worker_container["ports"] == [{"name": "http", "containerPort": 8081}]
    assert container["envFrom"] == [{"configMapRef": {"name": "agent-settings"}}]
    assert (
        container["livenessProbe"]["httpGet"]["path"],
        container["readinessProbe"]["httpGet"]["path"],
    ) == (
        "/health",
        "/ready",
    )
    settings = sim.named("kubernetes:core/v1:ConfigMap", "agent-settings").inputs["data"]
    assert settings["AGENT_REDIS_URL"] == "redis://redis.agents.svc.cluster.local:6379/0"
    assert settings["AGENT_LLM_BASE_URL"] == "http://llm.agents.svc.cluster.local:8000/v1"


def test_hashed_api_keys_never_carry_the_raw_key() -> None:
    from stacks.program import hashed_api_keys

    hashed = hashed_api_keys({"team-a": "sk-raw-key"})
    assert "sk-raw-key" not in hashed
    assert hashed == '{"team-a": "' + __import__("hashlib").sha256(b"sk-raw-key").hexdigest() + '"}'


def test_local_deploys_into_the_local_control_plane_with_its_nodes_and_volumes(
    simulated: Simulate,
) -> None:
    sim = simulated("local")
    providers = {p.name: p.inputs for p in sim.of_type("pulumi:providers:kubernetes")}
    # The kubeconfig is the machine's (scripts/pulumi-local); a path, never its contents.
    assert providers == {"local-cluster": {"kubeconfig": "simulated-kubeconfig"}}
    nodes = sim.of_type("kubernetes:core/v1:Node")
    zones = sorted(n.inputs["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes)
    assert zones == ["local-a", "local-a", "local-b"]
    volumes = {
        v.inputs["spec"]["claimRef"]["name"]: v.inputs["spec"]["capacity"]["storage"]
        for v in sim.of_type("kubernetes:core/v1:PersistentVolume")
    }
    # One volume for each claim the stack makes: Redis's template and Prometheus's.
    assert volumes == {"data-redis-0": "2Gi", "prometheus-data": "2Gi"}
    claims = {
        c.inputs["metadata"]["name"]
        for c in sim.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    }
    assert claims == {"prometheus-data"}


def test_local_renders_secrets_apart_from_shareable_manifests() -> None:
    sim = simulate(
        "local",
        overrides={
            "agent-platform:local": {
                "target": "render",
                "renderDirectory": "rendered/manifests",
                "secretsDirectory": "rendered/secrets",
            }
        },
    )
    providers = {p.name: p.inputs for p in sim.of_type("pulumi:providers:kubernetes")}
    assert providers["local-render"]["renderYamlToDirectory"] == "rendered/manifests"
    assert providers["local-render-secrets"]["renderYamlToDirectory"] == "rendered/secrets"
    # Nothing to schedule on and nothing to bind: no simulated node, no static volume.
    assert not sim.of_type("kubernetes:core/v1:Node")
    assert not sim.of_type("kubernetes:core/v1:PersistentVolume")


@pytest.mark.parametrize("stack", STACKS)
def test_cost_output_is_the_policy_models_estimate(simulated: Simulate, stack: str) -> None:
    from costing.model import estimate

    sim = simulated(stack)
    model = estimate([(r.type, r.inputs) for r in sim.resources if r.custom])
    output = sim.outputs["estimatedMonthlyCost"]
    assert output["expectedUsd"] == model.expected_total
    assert output["worstCaseUsd"] == model.worst_total
    assert output["unpriced"] == []
    if stack != "local":
        assert 0 < output["expectedUsd"] <= output["worstCaseUsd"] <= sim.config.budget.monthly_usd


@pytest.mark.parametrize("stack", STACKS)
def test_cost_output_is_known_at_preview_and_is_the_up_figure(
    simulated: Simulate, stack: str
) -> None:
    # The components declare what they are billed by from the config alone, so a preview
    # shows what prod will cost before anything exists, as the pack prices it then.
    preview = simulated(stack, True).outputs["estimatedMonthlyCost"]
    assert not isinstance(preview, Unknown)
    assert preview == simulated(stack).outputs["estimatedMonthlyCost"]


def test_prod_pods_run_immutable_tags_known_at_preview() -> None:
    sim = simulate("prod", preview=True, overrides=MANUAL_CANARY)
    images = {
        d.inputs["metadata"]["name"]: d.inputs["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in sim.of_type("kubernetes:apps/v1:Deployment")
    }
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com/agent-platform/agent-app"
    assert images["agent-api"] == f"{registry}:1.4.0"
    assert images["agent-api-canary"] == f"{registry}:1.5.0"


@pytest.mark.parametrize("stack", STACKS)
def test_every_component_registers_its_outputs(simulated: Simulate, stack: str) -> None:
    sim = simulated(stack)
    components = [r for r in sim.resources if not r.custom]
    for component in components:
        outputs = sim.component_outputs.get(component.urn)
        assert outputs, f"{component.type} {component.name} registered no outputs"


@pytest.mark.parametrize("stack", STACKS)
def test_prometheus_scrapes_the_backlog_once_through_the_metrics_service(
    simulated: Simulate, stack: str
) -> None:
    sim = simulated(stack)
    ns = sim.config.namespace
    config_map = next(
        c
        for c in sim.of_type("kubernetes:core/v1:ConfigMap")
        if c.inputs["metadata"]["name"] == "prometheus-config"
    )
    jobs = {
        j["job_name"]: j
        for j in yaml.safe_load(config_map.inputs["data"]["prometheus.yml"])["scrape_configs"]
    }
    assert jobs["agent-queue"]["static_configs"][0]["targets"] == [
        f"agent-metrics.{ns}.svc.cluster.local:9464"
    ]
    service = next(
        s
        for s in sim.of_type("kubernetes:core/v1:Service")
        if s.inputs["metadata"]["name"] == "agent-metrics"
    )
    assert service.inputs["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics"}
    ]
    # The Services clients reach never forward to the metrics port.
    for public in sim.of_type("kubernetes:core/v1:Service"):
        if public.inputs["metadata"]["name"].startswith("agent-api"):
            assert public.inputs["spec"]["ports"] == [
                {"name": "http", "port": 80, "targetPort": "http"}
            ]


def _service_links(sim: Simulation) -> dict[str, str]:
    """The variables Kubernetes puts in every pod of the namespace for each Service."""
    links: dict[str, str] = {}
    for service in sim.of_type("kubernetes:core/v1:Service"):
        name = service.inputs["metadata"]["name"].upper().replace("-", "_")
        for port in service.inputs["spec"].get("ports", []):
            number, proto = int(port["port"]), port.get("protocol", "TCP")
            url = f"{proto.lower()}://10.96.0.10:{number}"
            links |= {
                f"{name}_SERVICE_HOST": "10.96.0.10",
                f"{name}_SERVICE_PORT": str(number),
                f"{name}_PORT": url,
                f"{name}_PORT_{number}_{proto}": url,
                f"{name}_PORT_{number}_{proto}_PROTO": proto.lower(),
                f"{name}_PORT_{number}_{proto}_PORT": str(number),
                f"{name}_PORT_{number}_{proto}_ADDR": "10.96.0.10",
            }
            if port.get("name"):
                links[f"{name}_SERVICE_PORT_{port['name'].upper()}"] = str(number)
    return links


@pytest.mark.parametrize("stack", ["local", "dev", "prod"])
def test_the_worker_starts_with_the_environment_its_pod_gets(
    simulated: Simulate, stack: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The ConfigMap, the pod's own variables (Secret references filled in) and the service
    links together pass the app's start-up checks: no unknown AGENT_* variable, and a
    shutdown grace below both the claim idle time and the pod's termination grace."""
    from agent_app.settings import load_settings

    sim = simulated(stack)
    settings = sim.named("kubernetes:core/v1:ConfigMap", "agent-settings").inputs["data"]
    worker = sim.named("kubernetes:apps/v1:Deployment", "agent-worker-stable")
    pod = _pod_spec(worker)
    (container,) = pod["containers"]
    own = {e["name"]: e.get("value", "from-the-pod") for e in container["env"]}
    # The Secret's keys as the kubelet writes them into the mounted directory.
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for item in volume["secret"]["items"]:
        (secrets_dir / item["path"]).write_text("from-a-secret")
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert own["AGENT_SECRETS_DIR"] == mount["mountPath"]
    own["AGENT_SECRETS_DIR"] = str(secrets_dir)
    for name in [n for n in os.environ if n.startswith("AGENT_")]:
        monkeypatch.delenv(name)
    links = _service_links(sim) if pod.get("enableServiceLinks", True) else {}
    # The pods turn links off: with them, the agent-metrics Service would set
    # AGENT_METRICS_PORT=tcp://... over the app's setting.
    assert pod.get("enableServiceLinks") is False
    for name, value in {**links, **settings, **own}.items():
        monkeypatch.setenv(name, str(value))
    app = load_settings()
    assert app.llm_api_key.get_secret_value() == "from-a-secret"
    assert app.shutdown_grace_s * 1000 < app.claim_idle_ms
    # The worker exits within its grace plus a few seconds; Kubernetes kills it after this.
    assert pod["terminationGracePeriodSeconds"] >= app.shutdown_grace_s + 10


@pytest.mark.parametrize("stack", STACKS)
def test_every_workload_has_the_egress_it_needs_and_no_more(
    simulated: Simulate, stack: str
) -> None:
    sim = simulated(stack)
    ns = sim.config.namespace
    policies = {
        p.inputs["metadata"]["name"]: p.inputs["spec"]
        for p in sim.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if p.inputs["metadata"].get("namespace") == ns
    }
    assert policies["default-deny-egress"] == {"podSelector": {}, "policyTypes": ["Egress"]}

    def destinations(app: str) -> list[tuple[str, list[int]]]:
        found = []
        for rule in policies[f"{app}-egress"]["egress"]:
            where = ",".join(
                peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                if "podSelector" in peer
                else peer["ipBlock"]["cidr"]
                for peer in rule["to"]
            )
            found.append((where, [p["port"] for p in rule["ports"]]))
        return found

    redis = ("redis", [6379]) if sim.config.redis.mode == "in-cluster" else ("10.50.0.0/16", [6379])
    assert destinations("agent-api") == [redis]
    worker = destinations("agent-worker")
    assert worker[:2] == [redis, ("llm", [8000])]
    # Only the fetch allowlist's ports reach public addresses.
    assert worker[2:] == ([("0.0.0.0/0", [443])] if sim.config.agent.fetch_allowlist else [])
    scraped = {where for where, _ in destinations("prometheus")}
    assert {"agent-api", "agent-worker"} <= scraped
    assert ("llm" in scraped) == (sim.config.llm.mode == "vllm")


def test_the_kubernetes_objects_are_what_the_provider_would_send(simulated: Simulate) -> None:
    sim = simulated("prod")
    objects = sim.kubernetes_objects()
    declared = [
        r
        for r in sim.resources
        if r.custom and r.type.startswith("kubernetes:") and "helm.sh" not in r.type
    ]
    assert len(objects) == len(declared) > 0
    # Helm releases are not API objects; every object names its kind.
    assert all({"apiVersion", "kind", "metadata"} <= set(o) for o in objects)
    # Whole numbers as integers (the mocks hand floats over), secrets unwrapped.
    [api] = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "agent-api"
    ]
    port = api["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert type(port) is int
    assert "4dabf18193072939515e22adb298388d" not in json.dumps(objects)
    # Every resource the mocks created carries its id and state.
    assert all(r.id and r.outputs for r in declared)
