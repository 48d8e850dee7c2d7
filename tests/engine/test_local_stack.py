"""The real Pulumi engine on the `local` stack: up, preview, outputs, StackReference,
policy enforcement, secrets and schema validation of the rendered manifests.

Runs `scripts/pulumi-local` (the README's `make up`) against a throwaway state
directory and a stack file of its own: the committed Pulumi.local.yaml's stack, with its
manifests rendered into that directory too, so no test touches the user's stack, state
or build/. In CI a missing engine fails; elsewhere these tests skip until `make tools`
(or `make test`) has built it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from stacks.outputs import OUTPUT_KEYS, StackOutputs

REPO = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.31.0"

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]


@dataclass
class LocalStack:
    """A local stack in its own directory: state, stack file and rendered manifests."""

    state: Path

    def __post_init__(self) -> None:
        document = yaml.safe_load((REPO / "Pulumi.local.yaml").read_text())
        # Only the render target differs from the committed stack: never a user's
        # kubeconfig context, never the checkout's build/.
        document["config"]["agent-platform:local"] = {
            "renderDirectory": str(self.rendered),
            "secretsDirectory": str(self.rendered_secrets),
        }
        self.state.mkdir(parents=True, exist_ok=True)
        self.stack_file.write_text(yaml.safe_dump(document, sort_keys=False))

    @property
    def stack_file(self) -> Path:
        return self.state / "Pulumi.local.yaml"

    @property
    def rendered(self) -> Path:
        return self.state / "build" / "manifests"

    @property
    def rendered_secrets(self) -> Path:
        return self.state / "build" / "secrets"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "AGENT_PLATFORM_STATE": str(self.state),
            "AGENT_PLATFORM_STACK_FILE": str(self.stack_file),
        }
        result = subprocess.run(
            [str(REPO / "scripts" / "pulumi-local"), *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"pulumi-local {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    @property
    def config_file(self) -> Path:
        return self.state / "local" / "Pulumi.local.yaml"

    def secret(self, key: str) -> str:
        return self.run(
            "pulumi",
            "config",
            "get",
            key,
            "--stack",
            "local",
            "--config-file",
            str(self.config_file),
        ).stdout.strip()

    def outputs(self) -> dict[str, object]:
        parsed: dict[str, object] = json.loads(self.run("output").stdout)
        return parsed


@pytest.fixture(scope="module")
def engine(engine_built: None) -> None:
    """The engine tests' name for the shared requirement (tests/conftest.py)."""


@pytest.fixture(scope="module")
def deployed(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(tmp_path_factory.mktemp("pulumi-state"))
    stack.run("up")
    yield stack
    stack.run("destroy")


def test_up_prints_outputs_and_a_second_up_changes_nothing(deployed: LocalStack) -> None:
    preview = deployed.run("preview", "--expect-no-changes", "--diff")
    assert "unchanged" in preview.stdout
    again = deployed.run("up")
    assert "+ " not in again.stdout.split("Resources:")[1].split("Duration")[0]
    assert "unchanged" in again.stdout.split("Resources:")[1]
    assert '"agentApiEndpoint"' in again.stdout, "up prints the stack outputs"


def test_stack_outputs_follow_the_contract(deployed: LocalStack) -> None:
    outputs = deployed.outputs()
    assert tuple(sorted(outputs)) == tuple(sorted(OUTPUT_KEYS))
    assert outputs["kubeconfig"] == "[secret]"
    model = StackOutputs.model_validate(outputs)
    assert model.namespace == "agents"
    assert model.canary.weight == 0
    assert model.estimatedMonthlyCost.unpriced == []


def test_rendered_manifests_are_written_and_secrets_kept_apart(deployed: LocalStack) -> None:
    manifests = sorted(p.name for p in (deployed.rendered / "1-manifest").glob("*.yaml"))
    assert "apps_v1-deployment-agents-agent-api.yaml" in manifests
    assert "apps_v1-statefulset-agents-redis.yaml" in manifests
    assert not [m for m in manifests if "-secret-" in m], "Secrets must not be in the shared tree"
    secrets = sorted(p.name for p in (deployed.rendered_secrets / "1-manifest").glob("*.yaml"))
    assert secrets == ["v1-secret-agents-agent-secrets.yaml", "v1-secret-agents-redis-auth.yaml"]


def test_no_secret_value_in_shared_files_or_state(deployed: LocalStack) -> None:
    password = deployed.secret("redisPassword")
    api_key = next(iter(json.loads(deployed.secret("appApiKeys")).values()))
    assert len(password) >= 16
    needles = [password, api_key]
    needles += [base64.b64encode(n.encode()).decode() for n in needles]
    shared = [*deployed.rendered.rglob("*"), *(deployed.state / "local" / "backend").rglob("*")]
    shared += [REPO / "Pulumi.local.yaml"]
    files = [p for p in shared if p.is_file()]
    assert any(p.suffix == ".json" for p in files), "the state file was not searched"
    for path in files:
        text = path.read_text(errors="replace")
        for needle in needles:
            assert needle not in text, f"a secret value is in {path}"
    # The one place they may be: the unshared Secret manifests.
    rendered_secret = (
        deployed.rendered_secrets / "1-manifest" / "v1-secret-agents-redis-auth.yaml"
    ).read_text()
    assert base64.b64encode(password.encode()).decode() in rendered_secret


def test_another_project_reads_the_outputs_through_a_stack_reference(
    deployed: LocalStack, tmp_path: Path
) -> None:
    consumer = tmp_path / "consumer"
    shutil.copytree(REPO / "examples" / "consumer", consumer)
    project = yaml.safe_load((consumer / "Pulumi.yaml").read_text())
    project["runtime"]["options"]["virtualenv"] = str(REPO / ".venv")
    (consumer / "Pulumi.yaml").write_text(yaml.safe_dump(project))
    cwd = ["--cwd", str(consumer)]
    deployed.run("pulumi", "stack", "init", "reader", *cwd)
    deployed.run(
        "pulumi", "config", "set", "platformStack", "organization/agent-platform/local", *cwd
    )
    deployed.run("pulumi", "up", "--yes", "--skip-preview", "--non-interactive", *cwd)
    read = json.loads(deployed.run("pulumi", "stack", "output", "--json", *cwd).stdout)
    platform = deployed.outputs()
    assert read["agentApi"] == platform["agentApiEndpoint"]
    assert read["tasksUrl"] == f"{platform['agentApiEndpoint']}/v1/tasks"
    assert read["canaryWeight"] == 0
    assert read["kubeconfig"] == "[secret]"
    deployed.run("pulumi", "destroy", "--yes", "--non-interactive", *cwd)
    deployed.run("pulumi", "stack", "rm", "reader", "--yes", *cwd)


def _preview_with(
    stack: LocalStack, tmp_path: Path, config: Mapping[str, object], policy_config: Path
) -> subprocess.CompletedProcess[str]:
    document = yaml.safe_load(stack.config_file.read_text())
    document["config"].update(config)
    changed = tmp_path / "Pulumi.local.yaml"
    changed.write_text(yaml.safe_dump(document))
    return stack.run(
        "pulumi",
        "preview",
        "--stack",
        "local",
        "--non-interactive",
        "--config-file",
        str(changed),
        "--policy-pack",
        str(REPO / "policies"),
        "--policy-pack-config",
        str(policy_config),
        check=False,
    )


def test_a_mandatory_policy_violation_fails_the_preview(
    deployed: LocalStack, tmp_path: Path
) -> None:
    too_many = {"agent-platform:autoscaling": {"keda": False, "minReplicas": 2, "maxReplicas": 50}}
    result = _preview_with(
        deployed, tmp_path, too_many, REPO / "policies" / "config" / "local.json"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "autoscaler-bounds" in output
    assert "mandatory" in output
    assert "agent-api" in output


def test_an_advisory_violation_warns_without_failing(deployed: LocalStack, tmp_path: Path) -> None:
    levels = json.loads((REPO / "policies" / "config" / "local.json").read_text())
    rule = levels["autoscaler-bounds"]
    levels["autoscaler-bounds"] = (
        {**rule, "enforcementLevel": "advisory"} if isinstance(rule, dict) else "advisory"
    )
    advisory = tmp_path / "advisory.json"
    advisory.write_text(json.dumps(levels))
    too_many = {"agent-platform:autoscaling": {"keda": False, "minReplicas": 2, "maxReplicas": 50}}
    result = _preview_with(deployed, tmp_path, too_many, advisory)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "autoscaler-bounds" in output
    assert "advisory" in output


def test_bad_stack_config_fails_before_any_resource(deployed: LocalStack, tmp_path: Path) -> None:
    bad = {"agent-platform:canary": {"version": "0.2.0", "imageTag": "0.2.0", "weight": 150}}
    result = _preview_with(deployed, tmp_path, bad, REPO / "policies" / "config" / "local.json")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "agent-platform:canary.weight: Input should be less than or equal to 100" in output
    assert "Traceback" not in output


# Types and bounds fail the engine's check against each policy's config schema; settings
# only the pack can judge fail when the pack starts.
@pytest.mark.parametrize(
    ("policy_config", "expected"),
    [
        (
            {"autoscaler-bounds": {"max_replicas": "many"}},
            "autoscaler-bounds: max_replicas: Invalid type. Expected: integer",
        ),
        (
            {"monthly-budget": {"monthly_budget_usd": -50}},
            "monthly-budget: monthly_budget_usd: Must be greater than or equal to 0.01",
        ),
        ({"image-pinned": "loud"}, '"image-pinned": "loud" is not a valid enforcement level'),
        (
            {"autoscaler-bounds": {"max_replica": 3}},
            "autoscaler-bounds.max_replica: unknown setting",
        ),
    ],
)
def test_bad_policy_config_is_refused_with_a_clear_message(
    deployed: LocalStack, tmp_path: Path, policy_config: dict[str, object], expected: str
) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps(policy_config))
    result = _preview_with(deployed, tmp_path, {}, bad)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert expected in output, output
    assert "Traceback" not in output
    assert "errors.pydantic.dev" not in output


def test_rendered_manifests_pass_strict_schema_validation(deployed: LocalStack) -> None:
    # The manifests, not the kustomization that lists them.
    files = sorted(
        str(p) for p in deployed.rendered.rglob("*.yaml") if p.parent != deployed.rendered
    )
    assert len(files) > 20
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "kubernetes-validate"),
            "--strict",
            "-k",
            KUBERNETES_VERSION,
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(files)


def test_schema_validation_catches_a_bad_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "x"},
                "spec": {
                    "replicas": "two",
                    "selector": {},
                    "template": {"spec": {"containers": []}},
                },
            }
        )
    )
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "kubernetes-validate"),
            "--strict",
            "-k",
            KUBERNETES_VERSION,
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "replicas" in result.stdout + result.stderr


def _tree(directory: Path) -> dict[str, int]:
    return (
        {str(p): p.stat().st_mtime_ns for p in directory.rglob("*")} if directory.exists() else {}
    )


def test_up_renders_lost_files_again_and_destroy_leaves_nothing(
    engine: None, tmp_path: Path
) -> None:
    checkout_build = _tree(REPO / "build")
    stack = LocalStack(tmp_path / "state")
    stack.run("up")
    manifest = stack.rendered / "1-manifest" / "apps_v1-deployment-agents-agent-api.yaml"
    secret = stack.rendered_secrets / "1-manifest" / "v1-secret-agents-redis-auth.yaml"
    namespace = stack.rendered / "1-manifest" / "v1-namespace-default-agents.yaml"
    rendered = {path: path.read_text() for path in (manifest, secret, namespace)}
    count = len(list(stack.rendered.rglob("*.yaml")))
    listed = (stack.rendered / "kustomization.yaml").read_text()
    files = sorted(p.relative_to(stack.rendered).as_posix() for p in stack.rendered.rglob("*.yaml"))
    assert [f"- {f}" for f in files if f != "kustomization.yaml"] == listed.splitlines()[3:]
    for path in rendered:
        path.unlink()

    again = stack.run("up")
    assert "3 rendered file(s) are gone from disk" in again.stderr
    assert {path: path.read_text() for path in rendered} == rendered
    assert len(list(stack.rendered.rglob("*.yaml"))) == count
    # Converged: the next up has nothing to do.
    third = stack.run("up")
    assert "gone from disk" not in third.stderr
    assert "+ " not in third.stdout.split("Resources:")[1].split("Duration")[0]

    stack.run("destroy")
    left = json.loads(stack.run("pulumi", "stack", "export", "--stack", "local").stdout)
    assert left["deployment"].get("resources") in (None, [])
    assert not list(stack.rendered.rglob("*.yaml"))
    assert not list(stack.rendered_secrets.rglob("*.yaml"))
    assert _tree(REPO / "build") == checkout_build, "the checkout's own build/ was touched"


def test_each_checkout_has_its_own_local_state(tmp_path: Path) -> None:
    """Without AGENT_PLATFORM_STATE, the state directory is keyed to the checkout's path,
    so two clones on one machine never share a stack (nor its rendered files)."""
    env = {k: v for k, v in os.environ.items() if k != "AGENT_PLATFORM_STATE"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state-home")
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    for script in ("pulumi-local", "checkout-state.sh"):
        shutil.copy(REPO / "scripts" / script, clone / "scripts" / script)

    def where(checkout: Path) -> Path:
        result = subprocess.run(
            [str(checkout / "scripts" / "pulumi-local"), "where"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return Path(result.stdout.strip())

    ours, theirs = where(REPO), where(clone)
    assert ours != theirs
    assert ours.parent.parent == theirs.parent.parent == tmp_path / "state-home" / "agent-platform"
    assert ours.name == theirs.name == "local"
    assert ours.parent.name.startswith(f"{REPO.name}-")
    assert theirs.parent.name.startswith("clone-")
    assert where(REPO) == ours, "the same checkout always finds the same state"
