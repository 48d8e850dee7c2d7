"""The real engine: `pulumi preview` and a no-op `pulumi up` of the local stack, against
the same engine running an empty Python program (the floor).

The local stack is created by `scripts/pulumi-local` itself (stack, passphrase, this
machine's secrets) under a throwaway AGENT_PLATFORM_STATE, with `pulumi version` as the
command so that it deploys nothing. Then its config copy is pointed at render
directories inside that state directory, instead of the repository's build/, which
other work on this checkout (the engine tests, `make up`) reads and writes. The timed
commands are then the `pulumi` invocations `scripts/pulumi-local up` and `preview` run,
with the same flags and environment, but without the script's own per-call preamble
(stack lookup, config merge, secret checks), which is not the program's cost:
  preview   pulumi preview
  up        pulumi up --yes --skip-preview   (a no-op: nothing changed since the first up)
each with the policy pack (as `make up`) and without it (so the pack's share shows).
The floor is a throwaway project with an empty `__main__.py`, the same runtime options
(python, toolchain pip, virtualenv .venv), the same engine and a file backend.
At the end the local stack is destroyed and the state directory removed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmarks.stats import Series

REPO = Path(__file__).resolve().parent.parent
PULUMI_LOCAL = REPO / "scripts" / "pulumi-local"
PULUMI_ENGINE = REPO / "scripts" / "pulumi-engine"


def engine_environment() -> dict[str, str]:
    """The exports `scripts/pulumi-engine env` prints, applied to this environment."""
    printed = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [PULUMI_ENGINE, "env"], capture_output=True, text=True, check=True
    ).stdout
    env = dict(os.environ)
    # This machine's environment sets it, so every `pulumi` command would compile the
    # program's and the pack's modules afresh (about 0.3 s of CPU): a cost a user's
    # machine pays once, after which CPython reuses the cached bytecode. The timed
    # commands run with that default; the untimed first up writes the cache.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for line in printed.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export":
            key, value = words[1].split("=", 1)
            env[key] = value.replace("$PATH", env.get("PATH", ""))
    return env


def pulumi_version(env: dict[str, str]) -> str:
    return _run(["pulumi", "version"], env, REPO).stdout.strip()


def _run(
    command: Sequence[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    # `pulumi` is resolved on the engine's PATH, as scripts/pulumi-local resolves it.
    done = subprocess.run(  # noqa: S603
        list(command), env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def _timed_run(command: Sequence[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    _run(command, env, cwd)
    return time.perf_counter() - start


@dataclass
class EngineFigure:
    label: str
    samples: Series = field(default_factory=Series)


@dataclass
class EngineResults:
    first_up: float = 0.0
    floor_first_up: float = 0.0
    figures: dict[str, EngineFigure] = field(default_factory=dict)


@dataclass(frozen=True)
class _Project:
    cwd: Path
    env: dict[str, str]
    stack_args: tuple[str, ...]
    policy_args: tuple[str, ...]


def _local_stack(state: Path, base: dict[str, str]) -> _Project:
    env = {**base, "AGENT_PLATFORM_STATE": str(state)}
    _run([str(PULUMI_LOCAL), "pulumi", "version"], env, REPO)
    local = state / "local"
    config_file = local / "Pulumi.local.yaml"
    document = yaml.safe_load(config_file.read_text())
    document["config"]["agent-platform:local"] = {
        "renderDirectory": str(state / "render" / "manifests"),
        "secretsDirectory": str(state / "render" / "secrets"),
    }
    config_file.write_text(yaml.safe_dump(document, sort_keys=False))
    env = {
        **env,
        "PULUMI_BACKEND_URL": f"file://{local / 'backend'}",
        "PULUMI_CONFIG_PASSPHRASE_FILE": str(local / "passphrase"),
    }
    env.pop("PULUMI_CONFIG_PASSPHRASE", None)
    return _Project(
        REPO,
        env,
        ("--stack", "local", "--config-file", str(config_file), "--non-interactive"),
        (
            "--policy-pack",
            str(REPO / "policies"),
            "--policy-pack-config",
            str(REPO / "policies" / "config" / "local.json"),
        ),
    )


def _floor_project(state: Path, base: dict[str, str]) -> _Project:
    project = state / "floor"
    (project / "backend").mkdir(parents=True)
    runtime = {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": str(REPO / ".venv")},
    }
    (project / "Pulumi.yaml").write_text(
        yaml.safe_dump({"name": "bench-floor", "runtime": runtime}, sort_keys=False)
    )
    (project / "__main__.py").write_text("")
    env = {
        **base,
        "PULUMI_BACKEND_URL": f"file://{project / 'backend'}",
        "PULUMI_CONFIG_PASSPHRASE": "bench",
    }
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    _run(["pulumi", "stack", "init", "floor", "--non-interactive"], env, project)
    return _Project(project, env, ("--stack", "floor", "--non-interactive"), ())


UP = ("pulumi", "up", "--yes", "--skip-preview")
PREVIEW = ("pulumi", "preview")


def run(repetitions: int, progress: Callable[[str], None]) -> EngineResults:
    results = EngineResults()
    base = engine_environment()
    with tempfile.TemporaryDirectory(prefix="agent-platform-bench-") as directory:
        state = Path(directory)
        ours = _local_stack(state, base)
        floor = _floor_project(state, base)
        progress("engine: first up of the local stack (creates its resources)")
        results.first_up = _timed_run([*UP, *ours.stack_args, *ours.policy_args], ours.env, REPO)
        results.floor_first_up = _timed_run([*UP, *floor.stack_args], floor.env, floor.cwd)
        cases: list[tuple[str, _Project, tuple[str, ...]]] = [
            ("floor preview (empty program)", floor, PREVIEW),
            ("floor no-op up (empty program)", floor, UP),
            ("local preview, with policy pack", ours, PREVIEW),
            ("local no-op up, with policy pack", ours, UP),
            ("local preview, without policy pack", ours, PREVIEW),
            ("local no-op up, without policy pack", ours, UP),
        ]
        try:
            for repetition in range(1, repetitions + 1):
                for label, project, verb in cases:
                    pack = project.policy_args if "with policy" in label else ()
                    seconds = _timed_run(
                        [*verb, *project.stack_args, *pack], project.env, project.cwd
                    )
                    results.figures.setdefault(label, EngineFigure(label)).samples.add(seconds)
                    progress(f"engine {repetition}/{repetitions} {label}: {seconds:.2f}s")
        finally:
            progress("engine: destroying the local stack")
            _run(["pulumi", "destroy", "--yes", *ours.stack_args], ours.env, REPO)
    return results
