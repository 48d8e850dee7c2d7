"""The real engine on the `local` stack refuses a bad --policy-pack-config with a clear
message naming the policy and setting, before any resource is checked.

Types and bounds fail the engine's check against each policy's config schema; settings
only the pack can judge fail when the pack runs. Needs the built engine, as
tests/engine/test_local_stack.py does: skipped until `make tools`, except in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    versions = subprocess.run(
        [REPO / "scripts" / "pulumi-engine", "versions"], capture_output=True, text=True, check=True
    ).stdout
    engine_dir = Path(dict(line.split("=", 1) for line in versions.split())["dir"])
    if not (engine_dir / "bin" / "pulumi").exists():
        if os.environ.get("CI"):
            pytest.fail("the Pulumi engine is not built: `make tools` builds it before the tests")
        pytest.skip("the Pulumi engine is not built yet: run `make tools`")
    return tmp_path_factory.mktemp("pulumi-state")


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
    state: Path, tmp_path: Path, policy_config: dict[str, object], expected: str
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy_config))
    config = state / "local" / "Pulumi.local.yaml"
    # `pulumi-local` passes the stack's own policy config to `preview`; its `pulumi`
    # form takes the bad one instead, after the same stack and secrets set-up.
    result = subprocess.run(
        [
            str(REPO / "scripts" / "pulumi-local"),
            "pulumi",
            "preview",
            "--stack",
            "local",
            "--non-interactive",
            "--config-file",
            str(config),
            "--policy-pack",
            str(REPO / "policies"),
            "--policy-pack-config",
            str(path),
        ],
        cwd=REPO,
        env={**os.environ, "AGENT_PLATFORM_STATE": str(state)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert expected in output, output
    assert "Traceback" not in output
    assert "errors.pydantic.dev" not in output
