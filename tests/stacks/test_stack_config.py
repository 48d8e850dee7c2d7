"""Bad stack config fails before any resource exists, naming every key at fault."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from stack_problems import prod_problems

import stacks.simulate
from stacks.config import ConfigError, Environment, load_stack_config
from stacks.simulate import stack_file_config

SECRETS = {
    "agent-platform:redisPassword": "a-long-enough-redis-password",
    "agent-platform:appApiKeys": json.dumps({"team-a": "key-a"}),
}


def _valid_local() -> tuple[dict[str, Any], set[str]]:
    raw, secret_keys = stack_file_config("local")
    raw.update(SECRETS)
    return raw, secret_keys | set(SECRETS)


def _problems(changes: dict[str, Any], *, plaintext: tuple[str, ...] = ()) -> list[str]:
    raw, secret_keys = _valid_local()
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value if isinstance(value, str) else json.dumps(value)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(raw, secret_keys - set(plaintext))
    return caught.value.problems


def test_every_committed_stack_file_is_valid() -> None:
    for stack in ("local", "dev", "prod"):
        raw, secret_keys = stack_file_config(stack)
        assert load_stack_config(raw, secret_keys).environment == Environment(stack)


def test_missing_required_key() -> None:
    assert _problems({"agent-platform:llm": None}) == [
        "agent-platform:llm: required key is missing"
    ]


def test_missing_nested_key_names_the_full_path() -> None:
    problems = _problems({"agent-platform:agent": {"version": "1.0.0"}})
    assert problems == ["agent-platform:agent.imageTag: required key is missing"]


def test_wrong_type() -> None:
    problems = _problems(
        {"agent-platform:autoscaling": {"keda": False, "minReplicas": "two", "maxReplicas": 4}}
    )
    assert len(problems) == 1
    assert problems[0].startswith(
        "agent-platform:autoscaling.minReplicas: Input should be a valid integer"
    )
    assert "'two'" in problems[0]


@pytest.mark.parametrize("count", [0, -1])
def test_non_positive_counts(count: int) -> None:
    problems = _problems({"agent-platform:redis": {"mode": "in-cluster", "storageGi": count}})
    assert problems == [
        f"agent-platform:redis.storageGi: Input should be greater than 0 (got {count})"
    ]


def test_min_greater_than_max_for_autoscaler() -> None:
    problems = _problems(
        {"agent-platform:autoscaling": {"keda": False, "minReplicas": 5, "maxReplicas": 2}}
    )
    assert problems == ["agent-platform:autoscaling: minReplicas 5 is greater than maxReplicas 2"]


def _dev_with(changes: dict[str, Any]) -> list[str]:
    raw, secret_keys = stack_file_config("dev")
    for key, value in changes.items():
        raw[key] = json.dumps(value)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(raw, secret_keys)
    return caught.value.problems


def test_min_greater_than_max_for_node_pool() -> None:
    pool = {
        "name": "gpu",
        "instanceTypes": ["g5.xlarge"],
        "capacityType": "SPOT",
        "scaling": {"minSize": 3, "desiredSize": 3, "maxSize": 1},
    }
    problems = _dev_with({"agent-platform:gpuPools": [pool]})
    assert problems == ["agent-platform:gpuPools[0].scaling: minSize 3 is greater than maxSize 1"]


def test_unknown_gpu_instance_type() -> None:
    pool = {
        "name": "gpu",
        "instanceTypes": ["g5.xlarge", "g9.mega"],
        "capacityType": "SPOT",
        "scaling": {"minSize": 0, "desiredSize": 0, "maxSize": 1},
    }
    (problem,) = _dev_with({"agent-platform:gpuPools": [pool]})
    assert problem.startswith(
        "agent-platform:gpuPools[0].instanceTypes: unknown GPU instance type(s) ['g9.mega']"
    )


@pytest.mark.parametrize("weight", [-5, 101])
def test_canary_weight_outside_0_to_100(weight: int) -> None:
    problems = _problems(
        {"agent-platform:canary": {"version": "0.2.0", "imageTag": "0.2.0", "weight": weight}}
    )
    assert len(problems) == 1
    assert problems[0].startswith("agent-platform:canary.weight: Input should be")


@pytest.mark.parametrize("budget", [0, -10])
def test_budget_not_positive(budget: int) -> None:
    problems = _problems(
        {"agent-platform:budget": {"monthlyUsd": budget, "perTenantMonthlyUsd": 5}}
    )
    assert problems == [
        f"agent-platform:budget.monthlyUsd: Input should be greater than 0 (got {budget})"
    ]


def test_unknown_environment() -> None:
    problems = _problems({"agent-platform:environment": "staging"})
    assert problems == [
        "agent-platform:environment: Input should be 'local', 'dev' or 'prod' (got 'staging')"
    ]


def test_plaintext_secret_is_refused_without_echoing_it() -> None:
    problems = _problems({}, plaintext=("agent-platform:redisPassword",))
    assert problems == [
        "agent-platform:redisPassword: must be a secret, not plaintext; "
        "run `pulumi config set --secret redisPassword <value>`"
    ]
    assert SECRETS["agent-platform:redisPassword"] not in str(problems)


def test_unknown_key_is_a_typo_not_silence() -> None:
    problems = _problems({"agent-platform:redis": {"mode": "in-cluster", "storageGB": 4}})
    assert problems == ["agent-platform:redis.storageGB: unknown key (check its spelling)"]


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems(
        {
            "agent-platform:environment": "staging",
            "agent-platform:budget": {"monthlyUsd": 0, "perTenantMonthlyUsd": 5},
            "agent-platform:canary": {"version": "0.2.0", "imageTag": "0.2.0", "weight": 500},
        },
        plaintext=("agent-platform:appApiKeys",),
    )
    keys = sorted(p.split(": ", 1)[0] for p in problems)
    assert keys == [
        "agent-platform:appApiKeys",
        "agent-platform:budget.monthlyUsd",
        "agent-platform:canary.weight",
        "agent-platform:environment",
    ]


def test_cross_field_rules() -> None:
    problems = _problems(
        {"agent-platform:autoscaling": {"keda": True, "minReplicas": 1, "maxReplicas": 2}}
    )
    assert problems == ["agent-platform:autoscaling.keda: needs operators.keda.enabled: true"]


def test_prod_requires_a_private_endpoint() -> None:
    raw, secret_keys = stack_file_config("prod")
    cluster = json.loads(raw["agent-platform:cluster"])
    cluster["privateEndpoint"] = False
    raw["agent-platform:cluster"] = json.dumps(cluster)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(raw, secret_keys)
    assert caught.value.problems == [
        "agent-platform:cluster.privateEndpoint: prod needs a private API endpoint: set true"
    ]


def test_an_invalid_secret_is_reported_without_its_value() -> None:
    problems = _problems({"agent-platform:redisPassword": "short-secret"})
    assert problems == ["agent-platform:redisPassword: must be at least 16 characters"]


@pytest.mark.parametrize("text", ["config: [a, b]\n", "- just\n- a list\n", "config: 42\n"])
def test_a_stack_file_whose_config_is_not_a_mapping(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "Pulumi.broken.yaml").write_text(text)
    monkeypatch.setattr(stacks.simulate, "REPO_ROOT", tmp_path)
    with pytest.raises(ConfigError, match=r"Pulumi\.broken\.yaml: `config` must map"):
        stack_file_config("broken")


def _stack_with_llm(stack: str, **changes: Any) -> list[str]:
    raw, secret_keys = stack_file_config(stack)
    llm = {**json.loads(raw["agent-platform:llm"]), **changes}
    raw["agent-platform:llm"] = json.dumps(llm)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(raw, secret_keys)
    return caught.value.problems


def test_vllm_replicas_must_fit_the_gpu_pools() -> None:
    # dev's pool: at most 2 g5.xlarge, one GPU each.
    problems = _stack_with_llm("dev", autoscaling={"minReplicas": 0, "maxReplicas": 3})
    assert problems == [
        "agent-platform:llm.autoscaling.maxReplicas: 3 replicas of 1 GPU(s) need 3 GPUs; "
        "the GPU pools hold at most 2"
    ]
    problems = _stack_with_llm("dev", autoscaling=None, replicas=2, gpusPerReplica=2)
    assert problems == [
        "agent-platform:llm.replicas: 2 replicas of 2 GPU(s) need 4 GPUs; "
        "the GPU pools hold at most 2"
    ]


def test_prod_keeps_a_vllm_replica_and_autoscaling_needs_keda() -> None:
    problems = _stack_with_llm("prod", autoscaling={"minReplicas": 0, "maxReplicas": 4})
    assert problems == [
        "agent-platform:llm.autoscaling.minReplicas: prod keeps at least one vLLM replica: set >= 1"
    ]
    raw, secret_keys = stack_file_config("dev")
    raw["agent-platform:operators"] = json.dumps(
        {"keda": {"enabled": False, "chartVersion": "2.16.0"}}
    )
    raw["agent-platform:autoscaling"] = json.dumps(
        {"keda": False, "minReplicas": 1, "maxReplicas": 2}
    )
    with pytest.raises(ConfigError) as caught:
        load_stack_config(raw, secret_keys)
    assert caught.value.problems == [
        "agent-platform:llm.autoscaling: needs operators.keda.enabled: true"
    ]


def test_llm_autoscaling_bounds_and_mode() -> None:
    problems = _stack_with_llm("dev", autoscaling={"minReplicas": 2, "maxReplicas": 1})
    assert problems == [
        "agent-platform:llm.autoscaling: minReplicas 2 is greater than maxReplicas 1"
    ]
    problems = _stack_with_llm("dev", startupTimeoutSeconds=10)
    assert problems == [
        "agent-platform:llm.startupTimeoutSeconds: Input should be greater than or equal to 60 "
        "(got 10)"
    ]


def test_workers_scale_to_zero_only_where_the_stack_allows_it() -> None:
    # dev's stack file sets workerMinReplicas: 0, and loads.
    raw, secret_keys = stack_file_config("dev")
    assert load_stack_config(raw, secret_keys).autoscaling.workers.min_replicas == 0
    # prod keeps a worker warm.
    raw, secret_keys = stack_file_config("prod")
    autoscaling = json.loads(raw["agent-platform:autoscaling"])
    raw["agent-platform:autoscaling"] = json.dumps({**autoscaling, "workerMinReplicas": 0})
    with pytest.raises(ConfigError) as caught:
        load_stack_config(raw, secret_keys)
    assert caught.value.problems == [
        "agent-platform:autoscaling.workerMinReplicas: prod keeps at least one worker warm "
        "(no cold start on the first task): set >= 1"
    ]


@pytest.mark.parametrize(
    ("autoscaling", "problem"),
    [
        (
            {"keda": False, "minReplicas": 2, "maxReplicas": 4, "workerMinReplicas": 0},
            "agent-platform:autoscaling.workerMinReplicas: 0 needs keda: true (an HPA cannot "
            "scale to zero; KEDA wakes workers on the task stream) (got 0)",
        ),
        (
            {"keda": False, "minReplicas": 2, "maxReplicas": 4, "workerMinReplicas": 5},
            "agent-platform:autoscaling.workerMinReplicas: 5 is greater than maxReplicas 4 (got 5)",
        ),
        (
            {"keda": False, "minReplicas": 2, "maxReplicas": 4, "workerMinReplicas": -1},
            "agent-platform:autoscaling.workerMinReplicas: Input should be greater than or "
            "equal to 0 (got -1)",
        ),
        (
            {"keda": False, "minReplicas": 0, "maxReplicas": 4},
            "agent-platform:autoscaling.minReplicas: the API needs at least 1 replica; set "
            "workerMinReplicas: 0 instead (got 0)",
        ),
    ],
)
def test_worker_floor_is_checked_under_its_key(autoscaling: dict[str, Any], problem: str) -> None:
    assert _problems({"agent-platform:autoscaling": autoscaling}) == [problem]


def _dev_cluster_problems(**changes: Any) -> list[str]:
    raw, secret_keys = stack_file_config("dev")
    cluster = json.loads(raw["agent-platform:cluster"])
    for key, value in changes.items():
        if value is None:
            cluster.pop(key)
        else:
            cluster[key] = value
    raw["agent-platform:cluster"] = json.dumps(cluster)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(raw, secret_keys)
    return caught.value.problems


def test_a_public_endpoint_has_no_default_cidrs() -> None:
    # Before, leaving publicAccessCidrs out opened dev's API endpoint to 0.0.0.0/0.
    assert _dev_cluster_problems(publicAccessCidrs=None) == [
        "agent-platform:cluster.publicAccessCidrs: a public API endpoint needs the CIDRs that "
        "may reach it (there is no default); list them, or set cluster.privateEndpoint: true"
    ]
    assert _dev_cluster_problems(publicAccessCidrs=["not-a-cidr"]) == [
        "agent-platform:cluster.publicAccessCidrs[0]: Input is not a valid IPv4 network "
        "(got 'not-a-cidr')"
    ]


def test_dev_names_its_endpoint_cidrs_and_a_log_retention() -> None:
    raw, secret_keys = stack_file_config("dev")
    cluster = load_stack_config(raw, secret_keys).cluster
    assert cluster is not None
    assert [str(c) for c in cluster.public_access_cidrs] == ["203.0.113.0/24"]
    assert cluster.log_retention_days == 14


def test_log_retention_is_set_per_stack_and_one_cloudwatch_accepts() -> None:
    assert _dev_cluster_problems(logRetentionDays=None) == [
        "agent-platform:cluster.logRetentionDays: required key is missing"
    ]
    [problem] = _dev_cluster_problems(logRetentionDays=10)
    assert problem.startswith(
        "agent-platform:cluster.logRetentionDays: CloudWatch Logs keeps logs for one of [1, 3,"
    )
    assert problem.endswith("(got 10)")


def test_cluster_admins_are_iam_roles_or_users() -> None:
    assert _dev_cluster_problems(adminPrincipalArns=["team-admins"]) == [
        "agent-platform:cluster.adminPrincipalArns[0]: String should match pattern "
        "'^arn:aws[a-z-]*:iam::\\d{12}:(role|user)/\\S+$' (got 'team-admins')"
    ]


def test_karpenter_is_for_aws_stacks_with_a_pinned_ami() -> None:
    problems = _problems({"agent-platform:karpenter": {"enabled": True}})
    assert problems == [
        "agent-platform:karpenter.enabled: Karpenter launches EC2 nodes: dev or prod only"
    ]
    [problem] = _dev_with({"agent-platform:karpenter": {"enabled": True, "amiAlias": "al2023"}})
    assert problem.startswith("agent-platform:karpenter.amiAlias: String should match pattern")


def test_dashboards_flag_is_a_boolean() -> None:
    problems = _problems({"agent-platform:monitoring": {"dashboards": "sometimes"}})
    assert len(problems) == 1
    assert problems[0].startswith("agent-platform:monitoring.dashboards: ")


def test_prod_serves_the_gateway_over_https_only() -> None:
    gateway = {"enabled": True, "host": "agents.internal.example.com"}
    assert prod_problems(gateway=gateway) == [
        "agent-platform:gateway.tls: prod serves the agent API over HTTPS only "
        "(tenant API keys cross the VPC): set gateway.tls.issuer (cert-manager issues the "
        "certificate) or gateway.tls.secretName (a kubernetes.io/tls Secret you provide)"
    ]
    assert prod_problems(gateway={**gateway, "tls": {}}) == [
        "agent-platform:gateway.tls: set exactly one of secretName (a kubernetes.io/tls "
        "Secret you provide) and issuer (cert-manager issues the certificate)"
    ]


def test_a_certificate_issuer_needs_cert_manager() -> None:
    operators = {
        "keda": {"enabled": True, "chartVersion": "2.16.0"},
        "envoyGateway": {"enabled": True, "chartVersion": "v1.7.0"},
        "externalSecrets": {"enabled": True, "chartVersion": "0.10.5"},
        "flagger": {"enabled": True, "chartVersion": "1.36.1"},
    }
    assert prod_problems(operators=operators) == [
        "agent-platform:gateway.tls.issuer: needs operators.certManager.enabled: true"
    ]


def test_bring_your_own_certificate_needs_no_cert_manager() -> None:
    raw, secret_keys = stack_file_config("prod")
    raw["agent-platform:gateway"] = json.dumps(
        {"enabled": True, "host": "agents.example.com", "tls": {"secretName": "mine"}}
    )
    operators = json.loads(raw["agent-platform:operators"])
    operators["certManager"]["enabled"] = False
    raw["agent-platform:operators"] = json.dumps(operators)
    config = load_stack_config(raw, secret_keys)
    assert config.gateway.tls is not None
    assert config.gateway.tls.certificate_secret == "mine"


def test_an_acme_issuer_needs_aws() -> None:
    acme = {"acme": {"email": "ops@example.com", "hostedZoneId": "Z0123ABC"}}
    raw, secret_keys = _valid_local()
    raw["agent-platform:gateway"] = json.dumps(
        {"enabled": True, "host": "agents.example.com", "tls": {"issuer": acme}}
    )
    with pytest.raises(ConfigError) as caught:
        load_stack_config(raw, secret_keys)
    assert (
        "agent-platform:gateway.tls.issuer.acme: DNS-01 in Route53 needs an AWS environment: "
        "use issuer.ca locally"
    ) in caught.value.problems


def test_the_gateway_needs_envoy_gateway_and_ingress_nginx_is_gone() -> None:
    operators = {
        "keda": {"enabled": True, "chartVersion": "2.16.0"},
        "externalSecrets": {"enabled": True, "chartVersion": "0.10.5"},
        "flagger": {"enabled": True, "chartVersion": "1.36.1"},
        "certManager": {"enabled": True, "chartVersion": "v1.21.2"},
    }
    assert prod_problems(operators=operators) == [
        "agent-platform:gateway.enabled: needs operators.envoyGateway.enabled: true"
    ]
    nginx = {**operators, "ingressNginx": {"enabled": True, "chartVersion": "4.11.3"}}
    assert any("operators.ingressNginx" in p for p in prod_problems(operators=nginx))
    assert any(
        p.startswith("agent-platform:ingress")
        for p in prod_problems(ingress={"enabled": True, "host": "a.example"})
    )
