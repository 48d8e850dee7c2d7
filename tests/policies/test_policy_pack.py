"""The pack as the engine sees it: metadata, config files, the adapter, the entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from policy_fixtures import patched, workload
from pulumi.runtime import proto
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import _PolicyAnalyzerServicer
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from policies.adapter import initial_config, to_policy
from policies.catalog import BY_NAME, RULES
from policies.harness import evaluate
from policies.pack_config import CONFIG_DIR, PackConfigError, configure, load_raw
from policies.rule import ResourceRule

REPO = Path(__file__).resolve().parents[2]
IMAGE_PATH = "spec.template.spec.containers.0.image"
OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def test_rules_have_stable_names_and_one_line_metadata() -> None:
    assert len(BY_NAME) == len(RULES)
    for rule in RULES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.name), rule.name
        assert "\n" not in rule.description, rule.name
        assert rule.description.endswith("."), rule.name
        assert rule.enforcement in ("advisory", "mandatory", "disabled")
        assert rule.on_unknown, rule.name


@pytest.mark.parametrize("stack", ["local", "dev", "prod"])
def test_stack_config_files_name_real_rules_with_valid_thresholds(stack: str) -> None:
    assert (CONFIG_DIR / f"{stack}.json").exists()
    configured = configure(RULES, load_raw(stack))
    assert {c.rule.name for c in configured} == set(BY_NAME)


def _as_the_engine_sends(value: Any) -> Any:
    """The engine hands the pack's config over as protobuf Struct numbers: all floats."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: _as_the_engine_sends(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_the_engine_sends(v) for v in value]
    return value


@pytest.mark.parametrize("stack", ["local", "dev", "prod"])
def test_every_whole_number_setting_takes_the_engines_floats(stack: str) -> None:
    """Each rule's config, every default made explicit, with every number as a float."""
    raw = load_raw(stack)
    explicit = {}
    for rule in RULES:
        entry = raw.get(rule.name, {})
        entry = {} if isinstance(entry, str) else dict(entry)
        defaults = rule.config().model_dump(mode="json")
        explicit[rule.name] = {**defaults, **entry}
    configured = configure(RULES, {**raw, **_as_the_engine_sends(explicit)})
    assert {c.rule.name for c in configured} == set(BY_NAME)


def test_prod_enforces_everything_and_requires_immutability() -> None:
    configured = {c.rule.name: c for c in configure(RULES, load_raw("prod"))}
    # Third-party digests become mandatory once the stack file pins them (README).
    advisory = {name for name, c in configured.items() if c.enforcement != "mandatory"}
    assert advisory == {"third-party-image-digest"}
    assert configured["third-party-image-digest"].enforcement == "advisory"
    assert configured["image-pinned"].config.model_dump()["require_immutable"] is True


def test_bad_config_is_rejected() -> None:
    with pytest.raises(PackConfigError, match="no such policy: \\['no-such-rule'\\]"):
        configure(RULES, {"no-such-rule": "mandatory"})
    with pytest.raises(PackConfigError, match="enforcement level 'loud'"):
        configure(RULES, {"all": "loud"})
    with pytest.raises(ValueError, match="max_replicas"):
        configure(RULES, {"autoscaler-bounds": {"max_replicas": "many"}})


def test_levels_resolve_like_the_engine() -> None:
    raw = {
        "all": "advisory",
        "image-pinned": "mandatory",
        "probes-configured": {"enforcementLevel": "disabled"},
    }
    levels = {c.rule.name: c.enforcement for c in configure(RULES, raw)}
    assert levels["image-pinned"] == "mandatory"
    assert levels["probes-configured"] == "disabled"
    assert levels["container-resources-required"] == "advisory"


def test_harness_applies_levels() -> None:
    latest = patched(workload(), "spec.template.spec.containers.0.image", "app:latest")
    no_probe = patched(latest, "spec.template.spec.containers.0.livenessProbe", None)
    raw = {"all": "disabled", "image-pinned": "mandatory", "probes-configured": "advisory"}
    report = evaluate([no_probe], configure(RULES, raw))
    assert [v.rule for v in report.mandatory] == ["image-pinned"]
    assert [v.rule for v in report.advisory] == ["probes-configured"]
    assert not report.passed
    disabled = evaluate([no_probe], configure(RULES, {**raw, "image-pinned": "disabled"}))
    assert disabled.passed
    assert "policy pack passed: 0 mandatory, 1 advisory violation(s)" in disabled.render()


class Reported(list[tuple[str, str | None]]):
    """A ReportViolation callback that records what it was given."""

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.append((message, urn))


def _resource_policy(name: str) -> ResourceValidationPolicy:
    policy = to_policy(BY_NAME[name])
    assert isinstance(policy, ResourceValidationPolicy)
    return policy


def _engine_args(props: dict[str, Any], config: dict[str, Any] | None = None) -> Any:
    return ResourceValidationArgs(
        "kubernetes:apps/v1:Deployment",
        unknown_checking_proxy(props),
        "urn:pulumi:prod::agent-platform::kubernetes:apps/v1:Deployment::agent-api",
        "agent-api",
        OPTS,
        None,
        config,
    )


def test_adapter_reports_violations_through_the_engine_api() -> None:
    policy = to_policy(BY_NAME["autoscaler-bounds"])
    assert isinstance(policy, ResourceValidationPolicy)
    assert policy.enforcement_level is EnforcementLevel.MANDATORY
    assert policy.config_schema is not None
    assert policy.config_schema.properties["max_replicas"] == {
        "default": 20,
        "minimum": 1,
        "type": "integer",
    }
    reported = Reported()
    props = patched(workload(), "spec.template.spec.containers.0.image", "app:latest").props
    _resource_policy("image-pinned").validate(_engine_args(props), reported)
    assert [m for m, _ in reported] == [
        "Deployment 'agent-api': container 'api': spec.template.spec.containers[0].image "
        "'app:latest' uses the mutable tag 'latest'; pin a version tag or digest."
    ]


def test_engine_unknowns_become_the_engines_advisory_preview_note() -> None:
    props = patched(workload(), "spec.template.spec.containers.0.image", UNKNOWN_STRING_VALUE).props
    policy = _resource_policy("image-pinned")
    with pytest.raises(UnknownValueError) as raised:
        policy.validate(_engine_args(props), Reported())
    assert raised.value.message == (
        "Deployment 'agent-api': container 'api': spec.template.spec.containers[0].image is "
        "unknown at preview."
    )
    # Engine config arrives as JSON numbers and booleans; prod's setting makes it fail.
    reported = Reported()
    policy.validate(_engine_args(props, {"require_immutable": True}), reported)
    [(message, _)] = reported
    assert "cannot be shown to be immutable" in message


def test_stack_policy_runs_over_engine_resources() -> None:
    policy = to_policy(BY_NAME["monthly-budget"])
    assert isinstance(policy, StackValidationPolicy)
    group = {
        "instanceTypes": ["g5.12xlarge"],
        "scalingConfig": {"minSize": 1, "desiredSize": 1.0, "maxSize": 2.0},
    }
    resource = PolicyResource(
        "aws:eks/nodeGroup:NodeGroup",
        unknown_checking_proxy(group),
        "urn:pulumi:prod::agent-platform::aws:eks/nodeGroup:NodeGroup::gpu",
        "gpu",
        OPTS,
        None,
        None,
        [],
        {},
    )
    reported = Reported()
    args = StackValidationArgs([resource], {"monthly_budget_usd": 1000.0})
    policy.validate(args, reported)
    [(message, urn)] = reported
    assert message.startswith("stack: estimated cost (expected $4,140.56/month")
    assert "Node group 'gpu' (g5.12xlarge, ON_DEMAND): 1 nodes x $4,140.56" in message
    assert urn is None


def test_initial_config_uses_engine_enforcement_levels() -> None:
    config = initial_config(RULES, load_raw("local"))
    assert config["no-public-load-balancer"] == {"enforcementLevel": EnforcementLevel.DISABLED}
    assert config["monthly-budget"]["monthly_budget_usd"] == 50


def test_engine_entry_point_serves_the_pack() -> None:
    # The language host runs `python -u policies` with the pack directory first on sys.path.
    env = {**os.environ, "PULUMI_STACK": "prod"}
    process = subprocess.Popen(
        [sys.executable, "-u", str(REPO / "policies")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), process.stderr.read() if process.stderr else port
    finally:
        process.kill()
        process.wait()


def test_readme_documents_every_rule() -> None:
    whole = (REPO / "README.md").read_text()
    readme = whole.split("\n## Policy pack\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", readme, flags=re.M)
    assert sorted(rows) == sorted(BY_NAME)
    for rule in RULES:
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{rule.name}` |"))
        assert f"| {rule.enforcement} |" in row, rule.name
        assert row.endswith(f"| {rule.on_unknown} |"), rule.name


def test_every_resource_rule_ignores_unrelated_resources() -> None:
    from policy_fixtures import resource

    other = resource("kubernetes:core/v1:ServiceAccount", "agent", {"metadata": {"name": "a"}})
    for rule in RULES:
        if isinstance(rule, ResourceRule):
            assert rule.check(other, rule.config()) == [], rule.name


def _rpc(method: Callable[..., Any], request: Any) -> Any:
    """Calls a servicer method (pulumi_policy leaves them unannotated) as gRPC would."""
    return method(request, None)


def _analyze(require_immutable: bool) -> list[tuple[str, int, str]]:
    """One Deployment through the real analyzer servicer, as the engine drives it."""
    servicer = _PolicyAnalyzerServicer(
        "agent-platform", "0.0.1", [to_policy(r) for r in RULES], EnforcementLevel.MANDATORY
    )
    configure_request = proto.ConfigureAnalyzerRequest()
    for rule in RULES:
        configure_request.policyConfig[rule.name].enforcementLevel = proto.MANDATORY
    configure_request.policyConfig["image-pinned"].properties.update(
        {"require_immutable": require_immutable}
    )
    # The other image rule would note the same unknown image.
    configure_request.policyConfig["third-party-image-digest"].enforcementLevel = proto.DISABLED
    _rpc(servicer.Configure, configure_request)
    request = proto.AnalyzeRequest(
        type="kubernetes:apps/v1:Deployment", urn="urn:x", name="agent-api"
    )
    request.properties.update(patched(workload(), IMAGE_PATH, UNKNOWN_STRING_VALUE).props)
    response = _rpc(servicer.Analyze, request)
    return [(d.policyName, d.enforcementLevel, d.message) for d in response.diagnostics]


def test_engine_servicer_reports_an_unknown_image_as_an_advisory_preview_note() -> None:
    assert _analyze(require_immutable=False) == [
        (
            "image-pinned",
            proto.ADVISORY,
            "can't run policy 'image-pinned' from policy pack 'agent-platform@v0.0.1' during "
            "preview: Deployment 'agent-api': container 'api': "
            "spec.template.spec.containers[0].image is unknown at preview.",
        )
    ]


def test_engine_servicer_fails_an_unknown_image_where_it_must_be_known() -> None:
    [(name, level, message)] = _analyze(require_immutable=True)
    assert (name, level) == ("image-pinned", proto.MANDATORY)
    assert message.endswith(
        "so it cannot be shown to be immutable; reference a digest or "
        "version tag known before deployment."
    )


def test_engine_sees_every_policy_with_its_schema_and_the_stack_initial_config() -> None:
    servicer = _PolicyAnalyzerServicer(
        "agent-platform",
        "0.0.1",
        [to_policy(r) for r in RULES],
        EnforcementLevel.MANDATORY,
        initial_config(RULES, load_raw("prod")),
    )
    info = _rpc(servicer.GetAnalyzerInfo, None)
    assert [p.name for p in info.policies] == [r.name for r in RULES]
    budget = info.initialConfig["monthly-budget"]
    assert budget.enforcementLevel == proto.MANDATORY
    assert budget.properties["monthly_budget_usd"] == 6000


def test_no_pack_module_shadows_the_standard_library() -> None:
    # The language host puts policies/ first on sys.path (see the README).
    names = {p.stem for p in (REPO / "policies").iterdir() if p.suffix == ".py" or p.is_dir()}
    assert not names & set(sys.stdlib_module_names)
