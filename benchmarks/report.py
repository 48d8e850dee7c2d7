"""Renders the infrastructure section of benchmarks/RESULTS.md from one run's measurements."""

from __future__ import annotations

import itertools
from typing import Any

from benchmarks.engine import EngineResults
from benchmarks.policy_eval import PolicyFigure
from benchmarks.program_eval import ProgramResults, Scenario
from benchmarks.stats import Series

PROD_TARGET_S = 2.0
POLICY_PROD_TARGET_S = 0.5
POLICY_PER_RESOURCE_TARGET_S = 0.001
ENGINE_ADDED_TARGET = 2.0
# "Linear" is read as: the straight line explains the samples (R² >= 0.99) and the last
# segment's cost per service is within 25% of the first segment's.
LINEAR_R2 = 0.99
LINEAR_DRIFT = 0.25


def _s(seconds: float) -> str:
    return f"{seconds:.3f}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _triple(series: Series, unit: Any = _s) -> str:
    return f"{unit(series.min)} / {unit(series.median)} / {unit(series.max)}"


def _verdict(met: bool) -> str:
    return "met" if met else "**NOT met**"


def _per_service(services: list[Scenario]) -> list[str]:
    """Marginal cost of each step in the number of services, from the warm medians."""
    return [
        f"{low.services}->{high.services}: {_marginal(low, high):.3f} s/service"
        for low, high in itertools.pairwise(services)
    ]


def _marginal(low: Scenario, high: Scenario) -> float:
    return (high.warm.median - low.warm.median) / (high.services - low.services)


def render_infra(
    program: ProgramResults,
    policy: list[PolicyFigure],
    engine: EngineResults,
    profile: dict[str, Any],
) -> str:
    empty = program.empty
    prod = program.prod
    warm_fit = program.fit("warm")
    cold_fit = program.fit("cold")
    services = program.services
    first_step = _marginal(services[0], services[1])
    last_step = _marginal(services[-2], services[-1])
    linear = warm_fit.r_squared >= LINEAR_R2 and abs(last_step - first_step) <= (
        LINEAR_DRIFT * first_step
    )
    resources_per_service = (services[-1].resources - services[0].resources) / (
        services[-1].services - services[0].services
    )
    policy_prod, policy_synthetic = policy
    per_resource = policy_synthetic.pack.median / policy_synthetic.resources
    figures = engine.figures
    floor = {
        "preview": figures["floor preview (empty program)"].samples.median,
        "up": figures["floor no-op up (empty program)"].samples.median,
    }

    def added(label: str, verb: str) -> float:
        return (figures[label].samples.median - floor[verb]) / floor[verb]

    engine_added = {
        "preview": added("local preview, with policy pack", "preview"),
        "up": added("local no-op up, with policy pack", "up"),
    }

    lines = [
        "# Infrastructure program",
        "",
        "## Targets",
        "",
        "| Figure | Target | Measured (median) | |",
        "|---|---|---|---|",
        f"| prod stack, program evaluation under mocks (first evaluation in a fresh "
        f"process, imports excluded) | <= {PROD_TARGET_S:g} s | {_s(prod.cold.median)} s "
        f"(+ {_s(prod.imports.median)} s imports) | {_verdict(prod.cold.median <= PROD_TARGET_S)} |",
        f"| cost linear in agent services | R² >= {LINEAR_R2}, marginal cost stable "
        f"within {LINEAR_DRIFT:.0%} | slope {warm_fit.slope:.3f} s/service, "
        f"R² {warm_fit.r_squared:.4f}; marginal {first_step:.3f} -> {last_step:.3f} "
        f"s/service | {_verdict(linear)} |",
        f"| policy pack over prod | <= {POLICY_PROD_TARGET_S:g} s | "
        f"{_ms(policy_prod.pack.median)} ms | "
        f"{_verdict(policy_prod.pack.median <= POLICY_PROD_TARGET_S)} |",
        f"| policy pack per resource (1,000 resources) | <= 1 ms | "
        f"{per_resource * 1e6:.1f} µs | "
        f"{_verdict(per_resource <= POLICY_PER_RESOURCE_TARGET_S)} |",
        f"| engine: local preview adds over the floor | <= {ENGINE_ADDED_TARGET:g}x floor | "
        f"{engine_added['preview']:.2f}x | "
        f"{_verdict(engine_added['preview'] <= ENGINE_ADDED_TARGET)} |",
        f"| engine: local no-op up adds over the floor | <= {ENGINE_ADDED_TARGET:g}x floor | "
        f"{engine_added['up']:.2f}x | {_verdict(engine_added['up'] <= ENGINE_ADDED_TARGET)} |",
        "",
        "## Program evaluation under mocks",
        "",
        'Each sample is a fresh interpreter running `simulate("prod")` twice '
        "(`benchmarks/program_eval.py`): *import* is `import stacks.program, "
        "stacks.simulate`; *cold* is the first evaluation, which also loads the provider "
        "SDK submodules (`pulumi_aws.ec2`, `pulumi_kubernetes.core.v1`, ...) that those "
        "packages import lazily on first use; *warm* is the second evaluation in the same "
        "process. *Process* is the wall time of the whole child (interpreter start, "
        "imports, both evaluations). The baseline is the same `simulate()` machinery "
        "(config load, mocks, recording monitor, `run_pulumi_func`) with "
        "`stacks.program.build` replaced by a program that declares nothing.",
        "",
        "N agent services: `stacks.program.CanaryRelease` is wrapped (with "
        "`unittest.mock.patch.object`, in the benchmark only) so that the one release "
        "`build` declares is followed by N-1 more `CanaryRelease` components from the very "
        "same `CanaryReleaseArgs` (images, secret, settings, KEDA trigger, ingress), named "
        "`agent-2` .. `agent-N`. Their URNs differ (the benchmark checks); their Kubernetes "
        "object names do not, which the mocks never look at. Everything else of prod "
        "(network, EKS, GPU pool, Redis, LLM, monitoring, cost output) is built once. "
        "`prod, 1 agent service` is therefore the prod stack through the wrapper.",
        "",
        "| Scenario | Resources | Import | Cold evaluation | Warm evaluation | Process "
        "| Cold / baseline | Warm / baseline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for item in [empty, prod, *services]:
        lines.append(
            f"| {item.label} | {item.resources} | {_triple(item.imports)} | "
            f"{_triple(item.cold)} | {_triple(item.warm)} | {_triple(item.process)} | "
            f"{item.cold.median / empty.cold.median:.0f}x | "
            f"{item.warm.median / empty.warm.median:.0f}x |"
        )
    lines += [
        "",
        f"Straight-line fit over every sample of the 1/10/50-service runs: **warm "
        f"{warm_fit.slope:.4f} s per service** (intercept {warm_fit.intercept:.3f} s, "
        f"R² {warm_fit.r_squared:.4f}); cold {cold_fit.slope:.4f} s per service "
        f"(intercept {cold_fit.intercept:.3f} s, R² {cold_fit.r_squared:.4f}). "
        f"Each extra service registers "
        f"{resources_per_service:.0f} "
        f"resources. Marginal cost between the measured sizes (warm medians): "
        f"{'; '.join(_per_service(services))}.",
        "",
        "### The program's collector settings against CPython's defaults",
        "",
        "The program freezes what is alive after its imports and collects only the "
        "young generation during a run (`stacks/gc_tuning.py`, used by `__main__.py` and "
        "`simulate()`). The rows below are the same scenarios with that switched off "
        "(CPython's `(700, 10, 10)`), measured in the same run: the before of that change.",
        "",
        "| Scenario | Resources | Cold evaluation | Warm evaluation | Warm, program's "
        "settings | Speed-up (warm) |",
        "|---|---|---|---|---|---|",
    ]
    tuned = {(s.scenario, s.services): s for s in [prod, *services]}
    for item in program.default_gc:
        ours = tuned[(item.scenario, item.services)]
        lines.append(
            f"| {item.label} | {item.resources} | {_triple(item.cold)} | "
            f"{_triple(item.warm)} | {_s(ours.warm.median)} | "
            f"{item.warm.median / ours.warm.median:.1f}x |"
        )
    lines += [
        "",
        "## Policy evaluation",
        "",
        '`benchmarks/policy_eval.py`: the prod stack\'s resources from `simulate("prod")`; '
        "the synthetic stack cycles through them to 1,000 resources, each copy renamed "
        "(Pulumi name, URN and `metadata.name` get `-copyN`), so it has prod's mix of "
        "Deployments, Services, NetworkPolicies, AWS resources and components. *Pack* is "
        "`ResourceView.of` over every resource plus `policies.harness.evaluate` with every "
        "rule at `policies/config/prod.json`'s levels; the baseline is the "
        "`ResourceView.of` normalisation alone. In one process, after one untimed pass, "
        "with a `gc.collect()` before each sample.",
        "",
        "| Stack | Resources | Pack (ms) | Per resource (µs, median) | Views only, baseline "
        "(ms) | Pack / baseline | Violations found |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in policy:
        lines.append(
            f"| {entry.label} | {entry.resources} | {_triple(entry.pack, _ms)} | "
            f"{entry.pack.median / entry.resources * 1e6:.1f} | "
            f"{_triple(entry.baseline, _ms)} | "
            f"{entry.pack.median / entry.baseline.median:.1f}x | {entry.violations} |"
        )
    lines += [
        "",
        "The synthetic stack's mandatory violations are the budget rules seeing eight "
        "copies of prod's spend: expected, and evaluated in full.",
        "",
        "## Engine",
        "",
        "`benchmarks/engine.py`: the pinned engine (`scripts/pulumi-engine`), file "
        "backend under a temporary `AGENT_PLATFORM_STATE`. The local stack is created by "
        "`scripts/pulumi-local` itself; its config copy then renders into that temporary "
        "directory rather than the repository's `build/` (which other work on this "
        "checkout uses). The timed commands are the `pulumi` invocations "
        "`scripts/pulumi-local` runs, with its flags and environment but without the "
        "script's own preamble: `pulumi preview` and `pulumi up --yes --skip-preview` (a "
        "no-op after the first up), with `--policy-pack policies` and "
        "`--policy-pack-config policies/config/local.json` as `make up`, and without. "
        "The floor is a throwaway project with an empty `__main__.py`, the same runtime "
        "(python, pip toolchain, this `.venv`), the same engine and passphrase-encrypted "
        "file backend. This machine's environment sets `PYTHONDONTWRITEBYTECODE=1`, "
        "which would make every command compile the program's and the pack's modules "
        "again; the commands run without it, as on a user's machine, where the bytecode "
        "cached by the first (untimed) up is reused. *Added / floor* is "
        "(ours - floor) / floor.",
        "",
        "| Command | Min / median / max | Ratio to floor | Added / floor |",
        "|---|---|---|---|",
    ]
    for label, figure in figures.items():
        verb = "preview" if "preview" in label else "up"
        ratio = figure.samples.median / floor[verb]
        lines.append(f"| {label} | {_triple(figure.samples)} | {ratio:.2f}x | {ratio - 1:.2f}x |")
    pack_share = {
        verb: figures[f"local {name}, with policy pack"].samples.median
        - figures[f"local {name}, without policy pack"].samples.median
        for verb, name in (("preview", "preview"), ("up", "no-op up"))
    }
    lines += [
        "",
        f"First `up` of the local stack (creates every resource, with the pack): "
        f"{_s(engine.first_up)} s; of the empty program: {_s(engine.floor_first_up)} s. "
        f"The policy pack's share (median with - without): preview "
        f"{_s(pack_share['preview'])} s, no-op up {_s(pack_share['up'])} s.",
        "",
        *_profile_section(profile),
        "",
        *_findings(program, engine, profile),
    ]
    # Nested under the results file's own sections (machine, agent app, campaign).
    return "\n".join(f"#{line}" if line.startswith("#") else line for line in lines) + "\n"


def _findings(program: ProgramResults, engine: EngineResults, profile: dict[str, Any]) -> list[str]:
    """What the numbers above say, with the numbers."""
    named = {label: value for label, value in profile["cold_named"]}
    warm_build = dict(profile["warm_named"])["stacks.program.build (the program)"]
    imports = named["module imports during evaluation (lazy SDK submodules)"]
    prod_gc, services_gc = profile["gc"]
    default_prod, default_services = program.default_gc
    services = program.services
    figures = engine.figures
    floor = figures["floor preview (empty program)"].samples.median
    ours = figures["local preview, without policy pack"].samples.median
    pack = figures["local preview, with policy pack"].samples.median - ours
    prod = program.prod
    return [
        "## Findings",
        "",
        f"1. **A cold evaluation is mostly imports.** {imports / profile['cold_total']:.0%} "
        "of the profiled first evaluation is module loading: `pulumi_aws` and "
        "`pulumi_kubernetes` load their submodules lazily, on the program's first "
        "`aws.ec2...`/`k8s.core.v1...` access, and building their thousands of typed "
        f"classes (`typing.Union`, `__build_class__`) dominates. Cold {_s(prod.cold.median)} s "
        f"versus warm {_s(prod.warm.median)} s for prod: the difference is that one-off "
        "cost, which every `pulumi preview`/`up` pays since the engine starts a fresh "
        "interpreter.",
        f"2. **Garbage collection, now tuned.** With CPython's default thresholds the "
        "older-generation collections walk the whole heap, which grows with the stack: "
        "more collections, each dearer, so the cost per service rose with the number of "
        "services. The program now freezes the imported objects and collects only the "
        "young generation during a run (`stacks/gc_tuning.py`). Against the defaults, "
        f"measured in this run: warm prod {default_prod.warm.median / prod.warm.median:.1f}x "
        f"and the {services[-1].services}-service stack "
        f"{default_services.warm.median / services[-1].warm.median:.1f}x faster; the "
        f"collector's share of a warm evaluation is now {prod_gc['gc'] / prod_gc['total']:.0%} "
        f"(prod) and {services_gc['gc'] / services_gc['total']:.0%} (10 services). "
        f"Marginal cost per service: {_marginal(services[0], services[1]):.3f} s from 1 to "
        f"10, {_marginal(services[-2], services[-1]):.3f} s from 10 to 50.",
        "3. **Past the collector, the time is the Pulumi SDK's, not the program's.** In "
        "the warm profile the components' own code (the synchronous part of "
        f"`stacks.program.build`) is {warm_build / profile['warm_total']:.0%}; the rest is `Output.from_input`/`all`, "
        "`contains_unknowns`, `rpc.serialize_properties` and the asyncio scheduling of "
        "the resolution callbacks. The stack's cost output prices the parts the "
        "components declare (`costing.pricing.price`), "
        f"{named['costing.pricing.price (cost output)'] / profile['cold_total']:.1%} "
        "of the cold profile: it reads no resource's inputs.",
        f"4. **The engine: the program's imports and evaluation, and the pack's own "
        f"process.** Without the pack our preview takes {_s(ours)} s against the empty "
        f"program's {_s(floor)} s; the difference ({_s(ours - floor)} s) is about what the "
        "program costs under mocks in a fresh process (its imports, then a cold "
        "evaluation: finding 1), plus the engine's per-resource steps and the SDK's "
        f"synchronous debug-log RPC per registration. The policy pack adds {_s(pack)} s: "
        "a second Python process importing `pulumi_policy` (which imports the Pulumi "
        "SDK and gRPC) and its gRPC handshake with the engine; the rules themselves take "
        "milliseconds (policy section). What remains is mostly the generated "
        "`pulumi_kubernetes` modules' import time (thousands of typed classes), paid by "
        "every `pulumi` command that runs the program.",
    ]


def _profile_section(profile: dict[str, Any]) -> list[str]:
    cold_total = profile["cold_total"]
    warm_total = profile["warm_total"]
    lines = [
        "## Profile of the program evaluation",
        "",
        '`benchmarks/profiling.py`: cProfile (stdlib) over `simulate("prod")` in a fresh '
        "interpreter, first (cold) then second (warm) evaluation; cProfile inflates run "
        "time, so read the shares. It sees the main thread only (the mock monitor's "
        "executor threads are not in it). The garbage collector's share is measured "
        "separately, unprofiled, with `gc.callbacks`.",
        "",
        f"| Cumulative time in | Cold ({cold_total:.2f} s profiled) | Warm "
        f"({warm_total:.2f} s profiled) |",
        "|---|---|---|",
    ]
    for (label, cold), (_, warm) in zip(profile["cold_named"], profile["warm_named"], strict=True):
        lines.append(
            f"| {label} | {cold:.3f} ({cold / cold_total:.0%}) | "
            f"{warm:.3f} ({warm / warm_total:.0%}) |"
        )
    lines += [
        "",
        "Top functions of the warm evaluation by own time (the collector's pauses are "
        "charged to whichever function allocated when one started):",
        "",
        "| Function | Calls | Own time | Cumulative |",
        "|---|---|---|---|",
    ]
    for name, calls, own, cumulative in profile["warm_top"]:
        lines.append(f"| `{name}` | {calls} | {own:.3f} | {cumulative:.3f} |")
    lines += [
        "",
        "Garbage collection during a warm evaluation (unprofiled):",
        "",
        "| Agent services | Evaluation | In collections | Share | Full (gen 2) collections, time |",
        "|---|---|---|---|---|",
    ]
    for item in profile["gc"]:
        count, spent = item["by_generation"]["2"]
        lines.append(
            f"| {item['services']} | {_s(item['total'])} | {_s(item['gc'])} | "
            f"{item['gc'] / item['total']:.0%} | {count}, {_s(spent)} |"
        )
    return lines
