"""Fixtures every test folder may use: the tools the slow tests stand on, Go-built or
installed into their own virtualenv (a missing tool fails in CI, where `make tools` builds
them all first, and skips elsewhere), and each stack's simulation under mocks, evaluated
once per session.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from stacks.simulate import Simulation

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # Run in the background by a shell (`make test &`), pytest inherits SIGINT ignored and
    # so would every `pulumi` the engine tests run: the engine stops its Python plugins
    # with SIGINT and kills them 5 s later, adding 5 s to each command.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _require(what: str, built: bool) -> None:
    if built:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not built: `make tools` builds it before the tests")
    pytest.skip(f"{what} is not built yet: run `make tools`")


@pytest.fixture(scope="session")
def engine_built() -> None:
    """The pinned Pulumi engine (scripts/pulumi-engine)."""
    versions = subprocess.run(
        [REPO / "scripts" / "pulumi-engine", "versions"], capture_output=True, text=True, check=True
    ).stdout
    engine_dir = Path(dict(line.split("=", 1) for line in versions.split())["dir"])
    _require("the Pulumi engine", (engine_dir / "bin" / "pulumi").exists())


def _script_ready(script: str, verb: str) -> bool:
    """`scripts/<script> <verb>` with building forbidden: is the tool there already?"""
    result = subprocess.run(
        [REPO / "scripts" / script, verb],
        env={**os.environ, "AGENT_PLATFORM_NO_BUILD": "1"},
        capture_output=True,
        check=False,
        timeout=60,
    )
    return result.returncode == 0


@pytest.fixture(scope="session")
def cluster_built() -> None:
    """The local control plane's binaries (scripts/local-cluster)."""
    _require("the local cluster", _script_ready("local-cluster", "build"))


@pytest.fixture(scope="session")
def checkov_installed() -> None:
    """checkov in its own virtualenv (scripts/checkov)."""
    _require("checkov", _script_ready("checkov", "ensure"))


@pytest.fixture(scope="session")
def simulated() -> Callable[[str, bool], Simulation]:
    # Imported here: the app's tests need no Pulumi program.
    from stacks.simulate import simulate

    cache: dict[tuple[str, bool], Simulation] = {}

    def get(stack: str, preview: bool = False) -> Simulation:
        if (stack, preview) not in cache:
            cache[(stack, preview)] = simulate(stack, preview=preview)
        return cache[(stack, preview)]

    return get
