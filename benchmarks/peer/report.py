"""The peer section's markdown: ratio table, capacity per core, CPU by role, overload."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.peer.attribution import Shares
from benchmarks.peer.compare import Spread, Step, pair_ratios, spread
from benchmarks.peer.measure import (
    ADMISSION,
    CALLS_PER_TASK,
    FIXED_DELAY_S,
    Overload,
    PeerResults,
    Window,
)

RATIO_TARGET = 0.25
CAPACITY_TARGET = 200.0
HIT_API_CPU_TARGET_MS = 1.0
HIT_P50_TARGET_MS = 2.0
OVERLOAD_CPU_FACTOR = 1.2
OVERLOAD_P99_FACTOR = 2.0
REFUSAL_TARGET_S = 0.050


@dataclass
class Figures:
    pairs: PeerResults
    capacity_rps: float
    steps: list[tuple[Step, Window]]
    unloaded: Window
    overloads: list[Overload]
    profiles: dict[str, Shares]


def _s(spread_: Spread, scale: float = 1.0, fmt: str = ".2f") -> str:
    return " / ".join(f"{v * scale:{fmt}}" for v in (spread_.min, spread_.median, spread_.max))


def _verdict(ok: bool, detail: str) -> str:
    return f"met ({detail})" if ok else f"**NOT met** ({detail})"


def render(f: Figures, date: str, elapsed_s: float, load: tuple[str, str]) -> str:
    p = f.pairs
    app_miss = [w.ms_per(CALLS_PER_TASK) for w in p.app_miss]
    peer_miss = [w.ms_per(1) for w in p.peer_miss]
    app_hit = [w.ms_per(1) for w in p.app_hit]
    app_hit_api = [w.ms_per(1, ("api",)) for w in p.app_hit]
    peer_hit = [w.ms_per(1) for w in p.peer_hit]
    miss_ratio = spread(pair_ratios(app_miss, peer_miss))
    hit_ratio = spread(pair_ratios(app_hit, peer_hit))
    hit_p50 = spread([w.phase.p(50) for w in p.app_hit])
    peer_hit_p50 = spread([w.phase.p(50) for w in p.peer_hit])
    errors = sum(w.phase.error_count for w in p.app_miss + p.peer_miss + p.app_hit + p.peer_hit)
    lines = [
        "## The app beside LiteLLM's proxy, per core",
        "",
        f"Measured {date}; load average before / after {load[0]} / {load[1]}; "
        f"{elapsed_s:.0f} s; {len(app_miss)} alternating pairs (app, peer, ...).",
        "",
        "LiteLLM proxy 1.108.7 (`benchmarks/peer/requirements.lock`, its own virtualenv), one "
        "process, no database, no master key, its in-memory (`local`) cache opted into per "
        "request; the app as 1 API + 1 worker + redis-server. Both on CPU 0; the load "
        "generator and devllm (50 ms) on CPU 1. CPU is utime+stime from /proc of each side's "
        "processes over a fixed-rate window of the same LLM call rate (the app is offered half "
        "as many tasks: two calls each), so the load generator's CPU is not counted. "
        f"Errors over all pairs: {errors}.",
        "",
        "| CPU, ms (min / median / max) | app | LiteLLM | app / LiteLLM, per pair | target |",
        "|---|---|---|---|---|",
        f"| per LLM call | {_s(spread(app_miss))} | {_s(spread(peer_miss))} | "
        f"{_s(miss_ratio)} | "
        + _verdict(miss_ratio.median <= RATIO_TARGET, f"<= {RATIO_TARGET}x")
        + " |",
        f"| per cache hit (app: all roles) | {_s(spread(app_hit))} | {_s(spread(peer_hit))} | "
        f"{_s(hit_ratio)} | |",
        f"| per cache hit, app API only | {_s(spread(app_hit_api))} | | | "
        + _verdict(
            spread(app_hit_api).median <= HIT_API_CPU_TARGET_MS, f"<= {HIT_API_CPU_TARGET_MS} ms"
        )
        + " |",
        f"| cache hit p50 latency, ms | {_s(hit_p50, 1000)} | {_s(peer_hit_p50, 1000)} | | "
        + _verdict(hit_p50.median * 1000 <= HIT_P50_TARGET_MS, f"<= {HIT_P50_TARGET_MS} ms")
        + " |",
        "",
        "CPU per LLM call by role, app (ms, min / median / max): "
        + ", ".join(
            f"{role} {_s(spread([w.ms_per(CALLS_PER_TASK, (role,)) for w in p.app_miss]))}"
            for role in ("api", "worker", "redis")
        )
        + ".",
        "",
        "Where the app's CPU goes (py-spy, busy samples; innermost frame's library, and "
        "innermost agent_app module on the stack):",
        "",
        "| process, load | samples | by library | by agent_app module |",
        "|---|---|---|---|",
        *(
            f"| {name} | {sh.busy_samples} | "
            + ", ".join(f"{lib} {frac:.0%}" for lib, frac in sh.by_library)
            + " | "
            + ", ".join(f"{mod} {frac:.0%}" for mod, frac in sh.by_app_module)
            + " |"
            for name, sh in f.profiles.items()
        ),
        "",
        "### Capacity per app core",
        "",
        f"Offered rate stepped up (tasks/s, two LLM calls each); a step passes with no errors "
        f"and p99 overhead (latency minus the {FIXED_DELAY_S * 1000:.0f} ms of devllm) "
        "under 100 ms. Capacity: "
        f"**{f.capacity_rps:g} tasks/s** on one core; "
        + _verdict(f.capacity_rps >= CAPACITY_TARGET, f">= {CAPACITY_TARGET:g}")
        + ".",
        "",
        "| tasks/s | sent | errors | p99 overhead, ms | CPU/task api | worker | redis | total |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step, window in f.steps:
        by_role = [window.ms_per(1, (role,)) for role in ("api", "worker", "redis")]
        lines.append(
            f"| {step.rate:g} | {step.sent} | {step.errors} | "
            f"{(step.p99_s - FIXED_DELAY_S) * 1000:.0f} | "
            + " | ".join(f"{v:.2f}" for v in by_role)
            + f" | {sum(by_role):.2f} |"
        )
    base_cpu = f.unloaded.ms_per(1)
    base_p99 = f.unloaded.phase.p(99)
    lines += [
        "",
        "### Overload",
        "",
        f"Unloaded reference: {f.unloaded.phase.rate:g} tasks/s, {base_cpu:.2f} ms of app CPU "
        f"per task, p99 {base_p99 * 1000:.0f} ms. Refused = answered 429 or 503, by the "
        "app's bounded admission, set as a deployment promising a latency would set it: "
        + ", ".join(f"`{k}={v}`" for k, v in ADMISSION.items())
        + " (a refusal is an error in the capacity steps above).",
        "",
        "| offered | completed | refused | other errors | app CPU / completed task, ms "
        "(x unloaded) | p99 accepted, ms (x unloaded) | slowest refusal, ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in f.overloads:
        used = sum(o.window.cpu_s.values()) * 1000
        per_done = used / o.completed if o.completed else float("nan")
        p99 = o.window.phase.p(99)
        other = o.window.phase.error_count - o.refused
        lines.append(
            f"| {o.factor:g}x ({o.window.phase.rate:g}/s) | {o.completed} | {o.refused} | "
            f"{other} | {per_done:.2f} ({per_done / base_cpu:.2f}x) | "
            f"{p99 * 1000:.0f} ({p99 / base_p99:.2f}x) | {o.refusal_max_s * 1000:.0f} |"
        )
    lines += [
        "",
        f"Targets: CPU per completed task within {OVERLOAD_CPU_FACTOR}x, p99 of accepted within "
        f"{OVERLOAD_P99_FACTOR}x, every refusal under {REFUSAL_TARGET_S * 1000:.0f} ms.",
        "",
    ]
    return "\n".join(lines)
