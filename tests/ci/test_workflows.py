"""The GitHub Actions workflows: actionlint finds nothing in them (and does find planted
defects), and they do what the project promises its users: a policy-checked preview of
every cloud stack on each PR, deploys to dev then approved prod from main, mock policy
checks of every stack, least-privilege permissions, pinned actions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from costing.diff import COMMENT_MARKER

ROOT = Path(__file__).resolve().parents[2]
ACTIONLINT = ROOT / "scripts" / "actionlint"
WORKFLOWS = ROOT / ".github" / "workflows"
SETUP_ACTION = ROOT / ".github" / "actions" / "setup-project" / "action.yml"

PULUMI_ACTION = "pulumi/actions@"


def _pinned_version() -> str:
    m = re.search(r"^VERSION=(v\d+\.\d+\.\d+)$", ACTIONLINT.read_text(), re.M)
    assert m, "scripts/actionlint pins no VERSION=vX.Y.Z"
    return m.group(1)


def _actionlint(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # Generous: a cold call builds actionlint from its Go module first.
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path} is not a mapping"
    return doc


def _workflow(name: str) -> dict[str, Any]:
    return _load(WORKFLOWS / name)


def _workflow_files() -> list[Path]:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert files, f"no workflow in {WORKFLOWS}"
    return files


def _triggers(wf: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1, which PyYAML speaks, reads the bare key `on` as the boolean true.
    on = wf["on"] if "on" in wf else wf[True]
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    assert isinstance(on, dict)
    return on


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps = job.get("steps", [])
    assert isinstance(steps, list)
    return steps


def _pulumi_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _steps(job) if str(s.get("uses", "")).startswith(PULUMI_ACTION)]


def _with(step: dict[str, Any]) -> dict[str, str]:
    # Action inputs are strings; YAML may have typed `true` as a bool.
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in step["with"].items()}


def _matrix_stacks(job: dict[str, Any]) -> list[str]:
    matrix = job["strategy"]["matrix"]
    stacks = list(matrix.get("stack", [])) + [e["stack"] for e in matrix.get("include", [])]
    assert stacks, "the job's matrix names no stack"
    return stacks


def _stacks() -> dict[str, str]:
    """Every stack of the project, by its `Pulumi.<stack>.yaml`, to its environment."""
    stacks = {}
    for path in ROOT.glob("Pulumi.*.yaml"):
        stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        stacks[stack] = str(_load(path)["config"]["agent-platform:environment"])
    assert stacks, "no Pulumi.<stack>.yaml"
    return stacks


def _cloud_stacks() -> set[str]:
    return {stack for stack, env in _stacks().items() if env != "local"}


def _policy_inputs(step: dict[str, Any], stack: str) -> tuple[str, str]:
    inputs = _with(step)
    config = inputs["policyPackConfigs"].replace("${{ matrix.stack }}", stack)
    return inputs["policyPacks"], config


# --- actionlint -------------------------------------------------------------------------


def test_actionlint_finds_nothing_in_the_workflows() -> None:
    files = _workflow_files()
    proc = _actionlint(*(str(f.relative_to(ROOT)) for f in files))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


BASE_WORKFLOW = """\
name: planted
on: pull_request
permissions: {}
jobs:
  preview:
    permissions:
      contents: read
    strategy:
      matrix:
        stack: [dev]
    runs-on: ubuntu-24.04
    steps:
      - uses: pulumi/actions@v6
        with:
          command: preview
          stack-name: ${{ matrix.stack }}
          policyPacks: policies
"""


@pytest.mark.parametrize(
    ("good", "bad", "finding"),
    [
        pytest.param(
            "${{ matrix.stack }}",
            "${{ matrix.nope }}",
            r':16:\d+: property "nope" is not defined in object type \{stack: string\}',
            id="undefined-matrix-property",
        ),
        pytest.param(
            "policyPacks:",
            "policy-packs:",
            r':17:\d+: input "policy-packs" is not defined in action "pulumi/actions@v6"',
            id="misspelled-pulumi-input",
        ),
        pytest.param(
            "runs-on: ubuntu-24.04",
            "runs-on: {labels: [ubuntu-24.04], size: large}",
            r':11:\d+: unexpected key "size" for "runs-on" section',
            id="bad-runs-on",
        ),
    ],
)
def test_actionlint_reports_a_planted_defect(
    tmp_path: Path, good: str, bad: str, finding: str
) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    control = workflows / "control.yml"
    control.write_text(BASE_WORKFLOW)
    broken = workflows / "broken.yml"
    assert good in BASE_WORKFLOW
    broken.write_text(BASE_WORKFLOW.replace(good, bad))

    ok = _actionlint(str(control), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    proc = _actionlint(str(broken), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(finding, proc.stdout), proc.stdout


def _path_without_actionlint() -> str:
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if not (Path(d) / "actionlint").exists())


def test_actionlint_is_built_once_into_the_cache_then_reused(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PATH": _path_without_actionlint()}
    version = _pinned_version()
    binary = tmp_path / "agent-platform" / "tools" / f"actionlint-{version}" / "actionlint"

    cold = _actionlint("-version", env=env)
    assert cold.returncode == 0, cold.stderr
    assert f"building github.com/rhysd/actionlint {version}" in cold.stderr
    assert binary.is_file()
    assert cold.stdout.splitlines()[0] == version

    warm = _actionlint("-version", env=env)
    assert warm.returncode == 0, warm.stderr
    assert warm.stderr == ""
    assert warm.stdout.splitlines()[0] == version


def test_actionlint_without_go_fails_rather_than_skips(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path),
        "PATH": _path_without_actionlint(),
        "GO": str(tmp_path / "no-go-here"),
    }
    proc = _actionlint(env=env)
    assert proc.returncode == 2
    assert "Go toolchain not found" in proc.stderr


# --- what the workflows do --------------------------------------------------------------


def test_preview_runs_on_pull_requests_for_every_cloud_stack_with_the_policy_pack() -> None:
    wf = _workflow("preview.yml")
    assert "pull_request" in _triggers(wf)

    previewed: set[str] = set()
    for job in wf["jobs"].values():
        for step in _pulumi_steps(job):
            inputs = _with(step)
            assert inputs["command"] == "preview"
            assert inputs["comment-on-pr"] == "true"
            assert "matrix.stack" in inputs["stack-name"]
            for stack in _matrix_stacks(job):
                pack, config = _policy_inputs(step, stack)
                assert pack == "policies"
                assert config == f"policies/config/{stack}.json"
                assert (ROOT / config).is_file()
                previewed.add(stack)
    assert previewed == _cloud_stacks()


def _up_jobs(wf: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """stack -> (job id, job) for each job running `pulumi up`, by its policy config."""
    jobs = {}
    for job_id, job in wf["jobs"].items():
        for step in _pulumi_steps(job):
            assert _with(step)["command"] == "up"
            m = re.fullmatch(r"policies/config/(\w+)\.json", _with(step)["policyPackConfigs"])
            assert m, _with(step)["policyPackConfigs"]
            stack = m.group(1)
            assert _policy_inputs(step, stack)[0] == "policies"
            assert stack in _with(step)["stack-name"]
            jobs[stack] = (job_id, job)
    return jobs


def test_deploy_runs_on_main_dev_first_then_prod_behind_its_environment() -> None:
    wf = _workflow("deploy.yml")
    assert "main" in _triggers(wf)["push"]["branches"]

    jobs = _up_jobs(wf)
    assert set(jobs) == _cloud_stacks()
    dev_id, _ = jobs["dev"]
    _, prod = jobs["prod"]
    needs = prod["needs"]
    assert dev_id in ([needs] if isinstance(needs, str) else needs)
    environment = prod["environment"]
    assert (environment if isinstance(environment, str) else environment["name"]) == "prod"


def test_deploys_of_a_stack_are_serialised_and_never_cancelled() -> None:
    groups = []
    for job_id, job in _up_jobs(_workflow("deploy.yml")).values():
        concurrency = job["concurrency"]
        assert concurrency["cancel-in-progress"] is False, job_id
        groups.append(concurrency["group"])
    assert len(set(groups)) == len(groups), "two stacks share a concurrency group"


def test_ci_checks_every_stack_under_mocks_without_credentials() -> None:
    wf = _workflow("ci.yml")
    assert "pull_request" in _triggers(wf)
    policy = wf["jobs"]["policy"]
    assert set(_matrix_stacks(policy)) == set(_stacks())
    assert "make policy STACK=${{ matrix.stack }}" in [s.get("run") for s in _steps(policy)]
    for job_id, job in wf["jobs"].items():
        assert "id-token" not in job["permissions"], job_id
        assert not any("secrets." in str(step) for step in _steps(job)), job_id


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: p.name)
def test_every_workflow_and_job_declares_least_privilege_permissions(path: Path) -> None:
    wf = _load(path)
    assert "permissions" in wf, "a workflow without permissions gets the repository default"
    assert wf["permissions"] != "write-all"
    for job_id, job in wf["jobs"].items():
        assert "permissions" in job, job_id
        perms = job["permissions"]
        assert isinstance(perms, dict), f"{job_id}: {perms!r}"
        assert set(perms.values()) <= {"read", "write", "none"}, job_id


def _uses(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "uses" and isinstance(value, str):
                yield value
            else:
                yield from _uses(value)
    elif isinstance(node, list):
        for item in node:
            yield from _uses(item)


def test_remote_actions_are_pinned_by_commit_with_their_release_named() -> None:
    """A tag can be moved to other code, a commit cannot; the comment says which release
    the commit is, for a reader and for update tools."""
    for path in [*_workflow_files(), SETUP_ACTION]:
        remote = [u for u in _uses(_load(path)) if not u.startswith("./")]
        assert remote or path.name == "ci.yml" or path == SETUP_ACTION, path
        text = path.read_text()
        for ref in remote:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{path.name}: {ref}"
            assert re.search(rf"uses: {re.escape(ref)} # v\d+\.\d+\.\d+$", text, re.M), ref


def _environment(job: dict[str, Any]) -> str | None:
    environment = job.get("environment")
    return (
        environment if environment is None or isinstance(environment, str) else environment["name"]
    )


def test_pull_request_jobs_hold_only_their_preview_environments_credentials() -> None:
    """PR code runs in the preview jobs: every job that can reach a secret or an OIDC
    token does so inside a `preview-<stack>` environment (prod's behind a reviewer, set in
    the repository), never with repository-level secrets, a stored Pulumi token, or the
    deploy environments' roles."""
    checked = 0
    for path in _workflow_files():
        wf = _load(path)
        if not {"pull_request", "pull_request_target"} & set(_triggers(wf)):
            continue
        assert "pull_request_target" not in _triggers(wf), f"{path.name} runs PR code with secrets"
        for job_id, job in wf["jobs"].items():
            credentials = "secrets." in str(job) or job["permissions"].get("id-token") == "write"
            if not credentials:
                continue
            checked += 1
            assert _environment(job) == "preview-${{ matrix.stack }}", job_id
            assert set(_matrix_stacks(job)) == _cloud_stacks()
            assert "PULUMI_ACCESS_TOKEN" not in str(job), f"{job_id}: a stored Pulumi token"
            assert re.findall(r"secrets\.(\w+)", str(job)) == ["PULUMI_CONFIG_PASSPHRASE"]
    assert checked == 1, "the preview job was not found"


def test_only_the_deploy_jobs_use_the_deploy_environments() -> None:
    deploy = {_environment(job) for _, job in _up_jobs(_workflow("deploy.yml")).values()}
    assert deploy == _cloud_stacks()
    for path in _workflow_files():
        if path.name == "deploy.yml":
            continue
        for job_id, job in _load(path)["jobs"].items():
            assert _environment(job) not in deploy, f"{path.name}:{job_id}"


def test_setup_action_hands_pulumi_actions_the_cli_version_pyproject_pins(tmp_path: Path) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["optional-dependencies"]["infra"]
    pin = next(d.removeprefix("pulumi==") for d in deps if d.startswith("pulumi=="))

    (step,) = [s for s in _load(SETUP_ACTION)["runs"]["steps"] if s.get("id") == "pins"]
    output = tmp_path / "github_output"
    bash = shutil.which("bash")
    assert bash
    subprocess.run(
        [bash, "-euo", "pipefail", "-c", step["run"]],
        cwd=ROOT,
        env={**os.environ, "GITHUB_OUTPUT": str(output)},
        check=True,
        timeout=60,
    )
    assert output.read_text() == f"pulumi={pin}\n"

    for path in _workflow_files():
        for job in _load(path)["jobs"].values():
            for step in _pulumi_steps(job):
                assert _with(step)["pulumi-version"] == "${{ steps.setup.outputs.pulumi-version }}"
                setup = [s for s in _steps(job) if s.get("id") == "setup"]
                assert [s["uses"] for s in setup] == ["./.github/actions/setup-project"]


def test_pull_requests_get_the_cost_diff_posted_by_a_job_that_runs_no_pr_code() -> None:
    """`make cost-diff` against the PR's base commit runs with a read-only token; the
    comment is posted by a job that checks out nothing and holds only pull-requests:
    write, and reads the table from the first job's output through the environment
    (never `${{ }}` inside the script, where a crafted table could become shell)."""
    jobs = _workflow("preview.yml")["jobs"]
    diff, comment = jobs["cost-diff"], jobs["cost-comment"]

    assert diff["permissions"] == {"contents": "read"}
    (checkout,) = [
        s for s in _steps(diff) if str(s.get("uses", "")).startswith("actions/checkout@")
    ]
    assert checkout["with"]["fetch-depth"] == 0
    (run,) = [s for s in _steps(diff) if "make cost-diff" in s.get("run", "")]
    assert run["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    assert 'make cost-diff BASE="$BASE_SHA" OUT=cost-diff.md' in run["run"]
    assert diff["outputs"]["comment"] == f"${{{{ steps.{run['id']}.outputs.comment }}}}"

    assert comment["needs"] == "cost-diff"
    assert comment["permissions"] == {"pull-requests": "write"}
    assert comment["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert not list(_uses(comment)), "the commenting job runs no action, checkout included"
    (post,) = _steps(comment)
    assert post["env"]["BODY"] == "${{ needs.cost-diff.outputs.comment }}"
    assert post["env"]["GH_TOKEN"] == "${{ github.token }}"
    assert "${{" not in post["run"]
    assert post["env"]["MARKER"] == COMMENT_MARKER
    # Make's recipe is the one the README documents.
    assert "cost-diff: bootstrap" in (ROOT / "Makefile").read_text()
