"""`make up` into the local control plane against render mode (issue 19 point 5).

    python -m benchmarks.run --only up

Both are `scripts/pulumi-local` as a user runs it (`make up`, `make render`), with the
committed `Pulumi.local.yaml` and the policy pack, under a throwaway AGENT_PLATFORM_STATE:
the cluster is one of its own (its own ports, certificates and etcd) and rendered files go
into that directory, so the user's cluster, stacks and build/ are never touched.

- render: the first `up` (every object rendered to YAML), then no-op `up`s and previews.
- cluster: the control plane started (`scripts/local-cluster up`: etcd, kube-apiserver,
  controller manager, scheduler, KWOK), the first `up` (every object created and awaited
  until the controllers report it ready), then no-op `up`s and previews.

Each figure is wall time, the CPU of the command's own processes (engine, program,
providers, policy pack: the children it waits for) and, in cluster mode, the CPU the
control plane's processes spent meanwhile (from /proc, by the pid files the cluster
keeps). At the end the stack is destroyed and the cluster deleted.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmarks.app_load.processes import cpu_seconds
from benchmarks.stats import Series

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"

Progress = Callable[[str], None]


@dataclass
class Figure:
    wall: Series = field(default_factory=Series)
    command_cpu: Series = field(default_factory=Series)
    cluster_cpu: Series = field(default_factory=Series)


@dataclass
class UpResults:
    figures: dict[str, Figure] = field(default_factory=dict)
    objects: int = 0

    def add(self, label: str, wall: float, command_cpu: float, cluster_cpu: float) -> None:
        figure = self.figures.setdefault(label, Figure())
        figure.wall.add(wall)
        figure.command_cpu.add(command_cpu)
        figure.cluster_cpu.add(cluster_cpu)


@dataclass(frozen=True)
class _Sandbox:
    state: Path

    def env(self, target: str | None = None) -> dict[str, str]:
        env = {
            # As benchmarks/engine.py: this machine sets PYTHONDONTWRITEBYTECODE, which a
            # user's does not, so every command would compile the program afresh.
            **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            "AGENT_PLATFORM_STATE": str(self.state),
            "AGENT_PLATFORM_STACK_FILE": str(self.state / "Pulumi.local.yaml"),
        }
        if target:
            env["AGENT_PLATFORM_LOCAL_TARGET"] = target
        return env

    def control_plane_cpu(self) -> float:
        """CPU seconds of the running control plane's processes, by their pid files."""
        total = 0.0
        for pidfile in self.state.glob("cluster/run/*.pid"):
            try:
                total += cpu_seconds(int(pidfile.read_text().strip()))
            except (OSError, ValueError):
                continue  # a process that just ended: its CPU is gone with it
        return total

    def run(self, argv: Sequence[str], target: str | None = None) -> tuple[float, float, float]:
        """(wall s, the command's CPU s, the control plane's CPU s) of one command."""
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cluster = self.control_plane_cpu()
        started = time.perf_counter()
        done = subprocess.run(  # noqa: S603 - our own scripts, fixed arguments
            list(argv), cwd=REPO, env=self.env(target), capture_output=True, text=True
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        command = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
        return wall, command, self.control_plane_cpu() - cluster


def _write_stack_file(sandbox: _Sandbox) -> None:
    document = yaml.safe_load((REPO / "Pulumi.local.yaml").read_text())
    local = document["config"]["agent-platform:local"]
    local["renderDirectory"] = str(sandbox.state / "render" / "manifests")
    local["secretsDirectory"] = str(sandbox.state / "render" / "secrets")
    (sandbox.state / "Pulumi.local.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def run(repetitions: int, progress: Progress) -> UpResults:
    results = UpResults()
    local = str(SCRIPTS / "pulumi-local")
    cluster = str(SCRIPTS / "local-cluster")
    with tempfile.TemporaryDirectory(prefix="agent-platform-up-") as directory:
        sandbox = _Sandbox(Path(directory))
        _write_stack_file(sandbox)

        def step(label: str, argv: Sequence[str], target: str | None = None) -> None:
            wall, command, control_plane = sandbox.run(argv, target)
            results.add(label, wall, command, control_plane)
            progress(f"up: {label}: {wall:.1f} s")

        try:
            # Untimed: creates the render stack and writes the program's bytecode.
            sandbox.run([local, "preview"], target="render")
            step("render: first up", [local, "render"])
            for _ in range(repetitions):
                step("render: no-op up", [local, "render"])
                step("render: preview", [local, "preview"], target="render")
            step("cluster: control plane start", [cluster, "up"])
            step("cluster: first up", [local, "up"])
            for _ in range(repetitions):
                step("cluster: no-op up", [local, "up"])
                step("cluster: preview", [local, "preview"])
            exported = subprocess.run(  # noqa: S603
                [local, "pulumi", "stack", "export", "--stack", "local"],
                cwd=REPO,
                env=sandbox.env(),
                capture_output=True,
                text=True,
                check=True,
            )
            resources = json.loads(exported.stdout)["deployment"]["resources"]
            results.objects = sum(r["type"].startswith("kubernetes:") for r in resources)
        finally:
            progress("up: destroying the stack and deleting its cluster")
            for argv in ([local, "destroy"], [cluster, "delete"]):
                subprocess.run(argv, cwd=REPO, env=sandbox.env(), capture_output=True)  # noqa: S603
    return results


def render(results: UpResults) -> str:
    lines = [
        "## `make up`: the local control plane against render mode",
        "",
        "`scripts/pulumi-local` as `make up` and `make render` run it (the committed "
        "`Pulumi.local.yaml`, the policy pack, the real engine), under a throwaway state "
        "directory with a control plane of its own (`scripts/local-cluster`: etcd, "
        "kube-apiserver, controller manager, scheduler, KWOK's simulated nodes). The first "
        "`up` into the cluster creates every object and waits until the controllers report "
        f"it ready ({results.objects} Kubernetes objects in the stack). CPU: the "
        "command's own processes (engine, program, providers, pack), and the control "
        "plane's meanwhile. Seconds, median (min-max) where repeated.",
        "",
        "| step | wall | command CPU | control plane CPU |",
        "|---|---|---|---|",
    ]

    def cell(series: Series) -> str:
        if len(series.samples) == 1:
            return f"{series.median:.1f}"
        return f"{series.median:.1f} ({series.min:.1f}-{series.max:.1f})"

    for label, figure in results.figures.items():
        control_plane = cell(figure.cluster_cpu) if label.startswith("cluster") else "-"
        lines.append(
            f"| {label} | {cell(figure.wall)} | {cell(figure.command_cpu)} | {control_plane} |"
        )
    figures = results.figures
    render_up = figures["render: no-op up"].wall.median
    cluster_up = figures["cluster: no-op up"].wall.median
    first = figures["cluster: first up"].wall.median / figures["render: first up"].wall.median
    lines += [
        "",
        f"A first `up` into the cluster takes {first:.1f}x render mode's; a no-op `up` "
        f"{cluster_up:.1f} s against {render_up:.1f} s: against a cluster the provider "
        "diffs each object with the API server, which rendering skips.",
    ]
    return "\n".join(lines) + "\n"
