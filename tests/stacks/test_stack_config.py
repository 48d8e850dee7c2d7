"""Bad stack config fails before any resource exists, naming every key at fault."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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


def test_karpenter_is_for_aws_stacks_with_a_pinned_ami() -> None:
    problems = _problems({"agent-platform:karpenter": {"enabled": True}})
    assert problems == [
        "agent-platform:karpenter.enabled: Karpenter launches EC2 nodes: dev or prod only"
    ]
    [problem] = _dev_with({"agent-platform:karpenter": {"enabled": True, "amiAlias": "al2023"}})
    assert problem.startswith("agent-platform:karpenter.amiAlias: String should match pattern")
