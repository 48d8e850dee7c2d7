"""Program evaluation under mocks: the prod stack, with 1, 10 and 50 agent services.

Every sample is a fresh interpreter (`python -m benchmarks.program_eval SCENARIO N`),
so no run profits from another's imports. In it, three phases are timed apart:
  import  `stacks.program` and `stacks.simulate` (pulumi, the pulumi_kubernetes top-level
          package, the components, the policy cost model);
  cold    the first `simulate("prod")`: this also pays for the AWS-only components and
          the provider SDK modules prod uses (`pulumi_aws` and its `ec2`, `eks`, ...
          submodules, which load lazily on first use; `pulumi_kubernetes.helm.v3` and
          `apiextensions`, and the generated Kubernetes API groups the components use),
          and for first-call caches;
  warm    a second `simulate("prod")` in the same process: evaluation alone.

Scenarios:
  empty     the same `simulate()` machinery (config load, mocks, recording monitor,
            run_pulumi_func) with `stacks.program.build` replaced by a program that
            declares nothing: the baseline.
  prod      `simulate("prod")` as the tests and `make policy` run it.
  services  prod with N agent services: `stacks.program.CanaryRelease` is wrapped so that
            the one release `build` declares is followed by N-1 more CanaryRelease
            components built from the very same args (image, secrets, settings, queue
            trigger, ingress) under the names agent-2..agent-N. Their Pulumi names, hence
            URNs, differ (checked); their Kubernetes object names do not, which the mocks
            never look at. Nothing in stacks/ or components/ is changed.

A second argument `default-gc` evaluates with CPython's default collector settings
instead of the program's (`stacks/gc_tuning.py`): the before of that change, measured in
the same run.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pulumi

from benchmarks.stats import LinearFit, Series, fit_line

SERVICE_COUNTS = (1, 10, 50)


class _NoExports:
    def as_exports(self) -> dict[str, Any]:
        return {}


def _empty_build(config: object) -> _NoExports:
    return _NoExports()


def _replicating(original: Any, services: int) -> Callable[..., Any]:
    def construct(name: str, args: Any, opts: pulumi.ResourceOptions | None = None) -> Any:
        release = original(name, args, opts)
        for index in range(2, services + 1):
            original(f"{name}-{index}", args, opts)
        return release

    return construct


@contextmanager
def patched_program(program: Any, scenario: str, services: int) -> Iterator[None]:
    if scenario == "empty":
        with mock.patch.object(program, "build", _empty_build):
            yield
    elif scenario == "services":
        replicated = _replicating(program.CanaryRelease, services)
        with mock.patch.object(program, "CanaryRelease", replicated):
            yield
    elif scenario == "prod":
        yield
    else:
        raise ValueError(f"unknown scenario {scenario!r}")


def _measure(scenario: str, services: int, default_gc: bool) -> dict[str, float | int]:
    """One sample, in this (fresh) interpreter."""
    start = time.perf_counter()
    import stacks.program as program
    import stacks.simulate
    from stacks.simulate import simulate

    imported = time.perf_counter()
    phases: list[float] = []
    resources = 0
    gc_settings = (
        mock.patch.object(stacks.simulate, "program_gc", contextlib.nullcontext)
        if default_gc
        else contextlib.nullcontext()
    )
    with gc_settings, patched_program(program, scenario, services):
        for _ in range(2):
            began = time.perf_counter()
            simulation = simulate("prod")
            phases.append(time.perf_counter() - began)
            urns = [r.urn for r in simulation.resources]
            if len(set(urns)) != len(urns):
                raise RuntimeError(f"{scenario} x{services}: duplicate URNs")
            resources = len(urns)
    return {
        "import": imported - start,
        "cold": phases[0],
        "warm": phases[1],
        "resources": resources,
    }


@dataclass
class Scenario:
    label: str
    scenario: str
    services: int
    default_gc: bool = False
    imports: Series = field(default_factory=Series)
    cold: Series = field(default_factory=Series)
    warm: Series = field(default_factory=Series)
    process: Series = field(default_factory=Series)
    resources: int = 0


@dataclass
class ProgramResults:
    empty: Scenario
    prod: Scenario
    services: list[Scenario]
    default_gc: list[Scenario]

    def fit(self, phase: str) -> LinearFit:
        xs: list[float] = []
        ys: list[float] = []
        for item in self.services:
            samples = getattr(item, phase).samples
            xs += [float(item.services)] * len(samples)
            ys += samples
        return fit_line(xs, ys)


def _sample(item: Scenario) -> None:
    command = [sys.executable, "-m", "benchmarks.program_eval", item.scenario, str(item.services)]
    if item.default_gc:
        command.append("default-gc")
    began = time.perf_counter()
    # The interpreter is this one and the arguments are ours: nothing untrusted runs.
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    result = json.loads(done.stdout)
    item.imports.add(result["import"])
    item.cold.add(result["cold"])
    item.warm.add(result["warm"])
    item.process.add(elapsed)
    item.resources = result["resources"]


def run(
    repetitions: int, what_if_repetitions: int, progress: Callable[[str], None]
) -> ProgramResults:
    largest = SERVICE_COUNTS[-1]
    results = ProgramResults(
        empty=Scenario("empty program (baseline)", "empty", 0),
        prod=Scenario("prod stack", "prod", 1),
        services=[
            Scenario(f"prod, {n} agent service{'' if n == 1 else 's'}", "services", n)
            for n in SERVICE_COUNTS
        ],
        default_gc=[
            Scenario("prod stack, CPython's default GC", "prod", 1, default_gc=True),
            Scenario(
                f"prod, {largest} agent services, CPython's default GC",
                "services",
                largest,
                default_gc=True,
            ),
        ],
    )
    main = [results.empty, results.prod, *results.services]
    # Round-robin rather than one scenario after another: a burst of load elsewhere on
    # the machine then spreads over all scenarios instead of skewing one.
    for repetition in range(1, repetitions + 1):
        every = main + (results.default_gc if repetition <= what_if_repetitions else [])
        for item in every:
            _sample(item)
            progress(
                f"program {repetition}/{repetitions} {item.label}: "
                f"cold {item.cold.samples[-1]:.3f}s, warm {item.warm.samples[-1]:.3f}s"
            )
    return results


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1], int(sys.argv[2]), sys.argv[3:] == ["default-gc"])))
