"""Component modes the committed stacks do not use."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.autoscaling import ReplicaBounds
from components.canary import canary_bounds
from stacks.simulate import Simulation, simulate

MODES = [pytest.param(False, id="up"), pytest.param(True, id="preview")]


@pytest.mark.parametrize("preview", MODES)
def test_local_against_a_kubeconfig_context(preview: bool) -> None:
    sim = simulate(
        "local",
        overrides={"agent-platform:local": {"kubeconfigContext": "kind-agents"}},
        preview=preview,
    )
    (provider,) = sim.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["context"] == "kind-agents"
    assert "renderYamlToDirectory" not in provider.inputs
    assert sim.outputs["clusterName"] == "kind-agents"


@pytest.mark.parametrize("preview", MODES)
def test_external_llm_endpoint_runs_no_model_server(preview: bool) -> None:
    sim = simulate(
        "local",
        overrides={
            "agent-platform:llm": {
                "mode": "external",
                "model": "gpt-4o-mini",
                "baseUrl": "https://llm.example.com/v1",
            }
        },
        secret_overrides={"agent-platform:modelApiKey": "sk-external"},
        preview=preview,
    )
    names = {d.inputs["metadata"]["name"] for d in sim.of_type("kubernetes:apps/v1:Deployment")}
    assert "llm" not in names
    settings = sim.named("kubernetes:core/v1:ConfigMap", "agent-settings").inputs["data"]
    assert settings["AGENT_LLM_BASE_URL"] == "https://llm.example.com/v1"


def test_external_llm_without_its_key_is_a_config_error() -> None:
    from stacks.config import ConfigError

    with pytest.raises(
        ConfigError, match=r"agent-platform:modelApiKey: required when llm.mode is 'external'"
    ):
        simulate(
            "local",
            overrides={
                "agent-platform:llm": {"mode": "external", "model": "m", "baseUrl": "https://x/v1"},
                "agent-platform:modelApiKey": None,
            },
        )


def test_dev_with_two_gpu_pools_gets_a_device_plugin_each() -> None:
    pools = [
        {
            "name": "a10",
            "instanceTypes": ["g5.xlarge"],
            "capacityType": "SPOT",
            "scaling": {"minSize": 0, "desiredSize": 0, "maxSize": 2},
        },
        {
            "name": "l4",
            "instanceTypes": ["g6.xlarge"],
            "capacityType": "ON_DEMAND",
            "scaling": {"minSize": 0, "desiredSize": 1, "maxSize": 1},
        },
    ]
    sim = simulate("dev", overrides={"agent-platform:gpuPools": pools})
    plugins = sorted(
        d.inputs["metadata"]["name"] for d in sim.of_type("kubernetes:apps/v1:DaemonSet")
    )
    assert plugins == [
        "dcgm-exporter-a10",
        "dcgm-exporter-l4",
        "nvidia-device-plugin-a10",
        "nvidia-device-plugin-l4",
    ]
    for plugin in sim.of_type("kubernetes:apps/v1:DaemonSet"):
        pool = plugin.inputs["metadata"]["name"].rsplit("-", 1)[1]
        assert plugin.inputs["spec"]["template"]["spec"]["nodeSelector"] == {
            "agent-platform.io/gpu-pool": pool
        }


@pytest.mark.parametrize("karpenter", [True, False])
def test_gpu_pools_are_karpenter_node_pools_or_managed_node_groups(karpenter: bool) -> None:
    """One provisioner per GPU pool: a NodePool under Karpenter, else a managed group."""
    sim = simulate("prod", overrides={"agent-platform:karpenter": {"enabled": karpenter}})
    gpu_groups = [
        n
        for n in sim.of_type("aws:eks/nodeGroup:NodeGroup")
        if n.inputs.get("amiType", "").endswith("NVIDIA")
    ]
    node_pools = sim.of_type("kubernetes:karpenter.sh/v1:NodePool")
    releases = [r.inputs["name"] for r in sim.of_type("kubernetes:helm.sh/v3:Release")]
    assert (len(node_pools), len(gpu_groups)) == ((1, 0) if karpenter else (0, 1))
    assert ("karpenter" in releases) is karpenter
    # The system pool stays a managed node group either way.
    assert [n.name for n in sim.of_type("aws:eks/nodeGroup:NodeGroup") if n not in gpu_groups] == [
        "agents-prod-system"
    ]


def test_canary_bounds_follow_the_weight() -> None:
    stable = ReplicaBounds(min_replicas=3, max_replicas=20)
    assert canary_bounds(stable, 10) == ReplicaBounds(min_replicas=1, max_replicas=3)
    assert canary_bounds(stable, 50) == ReplicaBounds(min_replicas=3, max_replicas=20)


def test_app_api_keys_must_be_a_tenant_map() -> None:
    from stacks.config import Secrets

    with pytest.raises(ValueError, match="must be a JSON object"):
        Secrets(redis_password="x" * 20, app_api_keys="not-json")
    secrets = Secrets(redis_password="x" * 20, app_api_keys=json.dumps({"t": "k"}))
    assert secrets.tenant_api_keys() == {"t": "k"}
    assert "x" * 20 not in repr(secrets)


def test_pulumi_runtime_is_left_usable() -> None:
    # simulate() installs mocks process-wide; a later simulation must start clean.
    first = simulate("local")
    second = simulate("local")
    assert sorted(r.urn for r in first.resources) == sorted(r.urn for r in second.resources)
    assert all(r.urn.startswith("urn:pulumi:local::agent-platform::") for r in first.resources)
    assert isinstance(pulumi.Output.from_input("x"), pulumi.Output)


def test_a_preview_after_an_up_still_sees_unknowns() -> None:
    from pulumi.output import Unknown

    simulate("dev")
    preview = simulate("dev", preview=True)
    (cluster,) = preview.of_type("aws:eks/cluster:Cluster")
    assert isinstance(cluster.inputs["encryptionConfig"]["provider"]["keyArn"], Unknown)


@pytest.mark.parametrize("stack", ["local", "prod"])
def test_redis_outputs_its_endpoint_and_the_password_secret(stack: str) -> None:
    sim = simulate(stack)
    (queue,) = [r for r in sim.resources if r.type == "agent-platform:redis:Redis"]
    outputs = sim.component_outputs[queue.urn]
    assert outputs["passwordSecret"] == {"name": "agent-secrets", "key": "redis-password"}
    expected = (
        "queue-rg.cache.amazonaws.com" if stack == "prod" else "redis.agents.svc.cluster.local"
    )
    assert (outputs["endpoint"], outputs["port"]) == (expected, 6379)


SMALL_GPU_POOLS = [
    {
        "name": "a10",
        "instanceTypes": ["g5.xlarge"],
        "capacityType": "SPOT",
        "scaling": {"minSize": 0, "desiredSize": 0, "maxSize": 2},
    },
    {
        "name": "mixed",
        "instanceTypes": ["g6.xlarge", "g5.2xlarge"],
        "capacityType": "ON_DEMAND",
        "scaling": {"minSize": 0, "desiredSize": 1, "maxSize": 3},
    },
]
COST_VARIANTS = {
    "dev-two-gpu-pools": ("dev", {"agent-platform:gpuPools": SMALL_GPU_POOLS}),
    # Without Karpenter the GPU pools are managed node groups again.
    "prod-managed-gpu-groups": ("prod", {"agent-platform:karpenter": {"enabled": False}}),
    # The LLM's GPUs at rest size the Karpenter pool's expected nodes.
    "prod-three-llm-replicas": (
        "prod",
        {
            "agent-platform:llm": {
                "mode": "vllm",
                "model": "Qwen/Qwen2.5-7B-Instruct",
                "replicas": 3,
            }
        },
    ),
    "dev-elasticache": (
        "dev",
        {
            "agent-platform:redis": {
                "mode": "elasticache",
                "nodeType": "cache.t4g.medium",
                "numCacheClusters": 1,
            }
        },
    ),
    "prod-in-cluster-redis": (
        "prod",
        {"agent-platform:redis": {"mode": "in-cluster", "storageGi": 20}},
    ),
    "prod-external-llm": (
        "prod",
        {
            "agent-platform:llm": {
                "mode": "external",
                "model": "gpt-4o-mini",
                "baseUrl": "https://llm.example.com/v1",
            }
        },
    ),
    # A type the price table does not list: both readings report it, with one label.
    "prod-unpriced-system-pool": (
        "prod",
        {
            "agent-platform:cluster": {
                "region": "us-east-1",
                "availabilityZones": 2,
                "vpcCidr": "10.50.0.0/16",
                "kubernetesVersion": "1.31",
                "privateEndpoint": True,
                "publicAccessCidrs": [],
                "logRetentionDays": 365,
                "systemPool": {
                    "instanceType": "m8g.large",
                    "scaling": {"minSize": 3, "desiredSize": 3, "maxSize": 6},
                },
            }
        },
    ),
}


@pytest.mark.parametrize(
    ("stack", "overrides"), [pytest.param(*case, id=name) for name, case in COST_VARIANTS.items()]
)
def test_cost_output_is_the_packs_reading_of_the_resources(
    stack: str, overrides: dict[str, object]
) -> None:
    """What the components declare they are billed by prices like what they register."""
    from costing.model import estimate
    from costing.view import ResourceView

    sim = simulate(stack, overrides=overrides, secret_overrides={"agent-platform:modelApiKey": "k"})
    pack = estimate(
        ResourceView.of(r.type, r.name, r.urn, r.inputs) for r in sim.resources if r.custom
    )
    output = sim.outputs["estimatedMonthlyCost"]
    assert output["expectedUsd"] == pack.expected_total > 0
    assert output["worstCaseUsd"] == pack.worst_total
    assert output["unpriced"] == [f"{p.resource}: {p.message}" for p in pack.problems]


def test_one_fetch_allowlist_is_the_apps_and_the_workers_egress() -> None:
    agent = {
        "imageTag": "0.1.0",
        "version": "0.1.0",
        "fetchAllowlist": ["https://docs.example.com/guides/", "http://wiki.example.org:8080/"],
    }
    sim = simulate(
        "local",
        overrides={
            "agent-platform:agent": agent,
            "agent-platform:llm": {
                "mode": "external",
                "model": "gpt-4o-mini",
                "baseUrl": "https://llm.example.com/v1",
            },
        },
        secret_overrides={"agent-platform:modelApiKey": "sk-external"},
    )
    settings = sim.named("kubernetes:core/v1:ConfigMap", "agent-settings").inputs["data"]
    assert settings["AGENT_FETCH_ALLOWLIST"] == (
        "https://docs.example.com/guides/,http://wiki.example.org:8080/"
    )
    policy = sim.named("kubernetes:networking.k8s.io/v1:NetworkPolicy", "agent-worker-egress")
    public = [
        rule
        for rule in policy.inputs["spec"]["egress"]
        if rule["to"][0].get("ipBlock", {}).get("cidr") == "0.0.0.0/0"
    ]
    # The hosted model on 443, then the allowlist's ports; public addresses only.
    assert [[p["port"] for p in rule["ports"]] for rule in public] == [[443], [443, 8080]]
    for rule in public:
        assert "169.254.0.0/16" in rule["to"][0]["ipBlock"]["except"]


def _sidecar_dashboards(sim: Simulation) -> dict[str, Any]:
    return {
        m.inputs["metadata"]["name"]: json.loads(next(iter(m.inputs["data"].values())))
        for m in sim.of_type("kubernetes:core/v1:ConfigMap")
        if m.inputs["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_dashboards_are_provisioned_with_the_stacks_expected_cost(stack: str) -> None:
    sim = simulate(stack, secret_overrides={"agent-platform:modelApiKey": "k"})
    provisioned = _sidecar_dashboards(sim)
    assert sorted(provisioned) == [
        "grafana-dashboard-agent-cost",
        "grafana-dashboard-agent-service",
        "grafana-dashboard-gpus",
        "grafana-dashboard-llm-serving",
    ]
    expected = sim.outputs["estimatedMonthlyCost"]["expectedUsd"]
    budget = {"dev": 1500, "prod": 6000}[stack]
    monthly = provisioned["grafana-dashboard-agent-cost"]["panels"][0]
    steps = monthly["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, expected, budget]


def test_dashboards_are_off_unless_the_stack_asks() -> None:
    sim = simulate(
        "dev",
        overrides={"agent-platform:monitoring": {"dashboards": False}},
        secret_overrides={"agent-platform:modelApiKey": "k"},
    )
    assert _sidecar_dashboards(sim) == {}
    assert not [r for r in sim.resources if r.type == "agent-platform:monitoring:GrafanaDashboards"]
    # The local stack leaves the flag at its default: off.
    assert _sidecar_dashboards(simulate("local")) == {}


def test_prod_with_an_acme_issuer_gives_cert_manager_a_role_for_its_zone_only() -> None:
    gateway = {
        "enabled": True,
        "host": "agents.example.com",
        "tls": {"issuer": {"acme": {"email": "ops@example.com", "hostedZoneId": "Z0123ABC"}}},
    }
    sim = simulate("prod", overrides={"agent-platform:gateway": gateway})
    release = sim.named("kubernetes:helm.sh/v3:Release", "operators-cert-manager").inputs
    role_arn = release["values"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
    (role,) = [r for r in sim.of_type("aws:iam/role:Role") if r.name == "cert-manager-dns01-role"]
    assert role_arn.endswith(f":{role.name}")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    (condition,) = [s["Condition"]["StringEquals"] for s in trust["Statement"]]
    assert "system:serviceaccount:cert-manager:cert-manager" in condition.values()
    (policy,) = [
        r
        for r in sim.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.name == "cert-manager-dns01-policy"
    ]
    statements = json.loads(policy.inputs["policy"])["Statement"]
    zones = {s["Resource"] for s in statements} - {"arn:aws:route53:::change/*"}
    assert zones == {"arn:aws:route53:::hostedzone/Z0123ABC"}
    issuer = sim.named(
        "kubernetes:cert-manager.io/v1:ClusterIssuer", "agent-gateway-tls-acme-issuer"
    )
    (solver,) = issuer.inputs["spec"]["acme"]["solvers"]
    assert solver["dns01"]["route53"] == {"region": "us-east-1", "hostedZoneID": "Z0123ABC"}


def test_prod_with_its_own_certificate_has_no_issuer_and_no_role() -> None:
    gateway = {"enabled": True, "host": "agents.example.com", "tls": {"secretName": "mine"}}
    sim = simulate("prod", overrides={"agent-platform:gateway": gateway})
    assert sim.of_type("kubernetes:cert-manager.io/v1:Certificate") == []
    assert not [r for r in sim.of_type("aws:iam/role:Role") if "dns01" in r.name]
    listener = sim.named(
        "kubernetes:gateway.networking.k8s.io/v1:Gateway", "agent-gateway-gateway"
    ).inputs["spec"]["listeners"][0]
    assert listener["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "mine"}]
