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


# The profile-driven cuts of issue 19 point 4, each measured A/B when it was made: alternating
# fresh stacks of the code before and after, the same load, one table per change.
CUTS = """### Profile-driven cuts (A/B)

**Redis round trips per task, 18 to 9** (API 4 to 2, worker 14 to 7; counted per command
by a client hook): the API reads the budget and the usage in one pipeline and admits in
one script (stored result, load, budget, enqueue); the worker starts in one script
(attempt, record, spend, open circuits), looks each call's cached reply up with its budget
check, charges each call with its cache write, and finishes in one script. Then the load
refusal remembered per replica (`RefusalGate`) and waiting requests that read nothing
until their deadline. Measured 2026-12-05 04:05-04:11 UTC: 5 alternating triples of fresh
stacks (1 API, 2 workers, redis-server, devllm at 50 ms; not pinned), 1,500 tasks at 100
tasks/s each, load average 0.7-1.4. CPU ms per task (min / median / max):

| code | API | workers | redis | app total | round trips | p99, ms |
|---|---|---|---|---|---|---|
| before (main at 0015340) | 2.47 / 2.50 / 2.72 | 5.61 / 5.76 / 6.26 | 0.75 / 0.76 / 0.82 | 8.86 / 9.01 / 9.80 | 18 | 121 |
| round trips cut | 2.05 / 2.08 / 2.30 | 4.95 / 5.04 / 5.37 | 0.67 / 0.68 / 0.69 | 7.69 / 7.79 / 8.37 | 9 | 116 |
| + refusal gate, quiet waits | 1.95 / 1.97 / 2.15 | 4.99 / 5.07 / 5.45 | 0.68 / 0.70 / 0.71 | 7.63 / 7.74 / 8.29 | 9 | 115 |

App CPU per task -14% (median 9.01 to 7.74 ms). A load refusal answered from the replica's
memory costs about 0.25 ms of API CPU, against 1.3 ms for one decided in Redis.

**The finishing rate's time constant, 10 s to 2 s.** With 10 s the rate lagged a rising
load and admission refused work the service had room for: this section's capacity steps
refused 31 of 450 tasks at 75 tasks/s (p99 overhead 54 ms) and capacity read 50 tasks/s
(2026-12-05 05:29 UTC); with 2 s, 0 refusals up to 100 tasks/s (05:33 UTC, the same bench
and admission settings).

**Tried and left out: hiredis** (redis-py's C reply parser, `hiredis` 3.5.0). This whole
section, alternating without / with, 2026-12-05 06:20-06:35 UTC: app / LiteLLM per LLM
call 0.33 / 0.35 then 0.37 / 0.36 (median per run), cache hit API CPU 1.80 / 1.72 then
2.03 / 2.05 ms. No gain beyond the run-to-run spread: the replies are a few short fields,
and the time is in the event loop's socket reads around them, not in parsing.
"""


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
        CUTS,
    ]
    return "\n".join(lines)
