"""docs/architecture.dot is what the engine's graph of the local program gives today, so
the README's picture cannot drift from the code (stacks/diagram.py; `make diagram`).

Each test runs one `pulumi up` in render mode into a throwaway directory (its own state,
stack file and rendered manifests), never the user's stack, state or build/. In CI a
missing engine fails; elsewhere these tests skip until `make tools` has built it.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import yaml

from stacks.diagram import DOT_PATH, generate

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.engine, pytest.mark.timeout(600)]


def _stale(generated: str) -> str | None:
    """Why the committed diagram is not the generated one, or None when it is."""
    committed = DOT_PATH.read_text() if DOT_PATH.exists() else ""
    if generated == committed:
        return None
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "docs/architecture.dot (committed)",
            "docs/architecture.dot (from the engine)",
        )
    )
    return f"the architecture diagram is out of date with the program: run `make diagram`\n{diff}"


def _tree(directory: Path) -> dict[str, int]:
    return (
        {str(p): p.stat().st_mtime_ns for p in directory.rglob("*")} if directory.exists() else {}
    )


def test_the_committed_diagram_is_the_programs(engine_built: None) -> None:
    checkout_build = _tree(REPO / "build")
    generated = generate()
    assert _tree(REPO / "build") == checkout_build, "the checkout's own build/ was touched"
    problem = _stale(generated)
    if problem is not None:
        pytest.fail(problem, pytrace=False)


def test_a_program_with_another_resource_fails_the_check(
    engine_built: None, tmp_path: Path
) -> None:
    # A canary release adds its track's Deployments, Services and autoscalers: the same
    # program, registering more.
    document = yaml.safe_load((REPO / "Pulumi.local.yaml").read_text())
    version = "0.2.0"
    document["config"]["agent-platform:canary"] = {
        "version": version,
        "imageTag": version,
        "weight": 10,
    }
    stack_file = tmp_path / "Pulumi.local.yaml"
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    problem = _stale(generate(stack_file))
    assert problem is not None
    assert "run `make diagram`" in problem
    assert "+    " in problem
    assert "agent-api-canary" in problem
