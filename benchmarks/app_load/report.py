"""The agent app's section of benchmarks/RESULTS.md."""

from __future__ import annotations

import os
import platform
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from benchmarks.app_load.load import Phase, percentile
from benchmarks.app_load.plan import (
    CACHE_HIT_P50_TARGET,
    CAPACITY_P99_LIMIT,
    CAPACITY_TARGET_RPS,
    LLM_CONCURRENCY,
    LLM_LATENCY_MS,
    MAIN_WORKERS,
    OVERHEAD_TARGETS,
    QUICK,
    TARGET_RATE,
    WORKER_CONCURRENCY,
)
from benchmarks.app_load.scenarios import Pair, Results, Soak


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _triple_ms(values: Sequence[float]) -> str:
    return f"{_ms(min(values))} / {_ms(statistics.median(values))} / {_ms(max(values))}"


def _triple(values: Sequence[float], fmt: str = "{:.0f}") -> str:
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def _verdict(met: bool) -> str:
    return "met" if met else "**NOT met**"


def _errors(phases: Sequence[Phase]) -> str:
    total: Counter[str] = Counter()
    for phase in phases:
        total.update(phase.errors)
    return ", ".join(f"{kind}: {n}" for kind, n in total.most_common()) or "none"


def _machine() -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def render(
    results: Results, machine: str, date: str, duration_s: float, load: tuple[str, str]
) -> str:
    plan = results.plan
    pairs = results.at_target
    overhead = {pct: [p.overhead(pct) for p in pairs] for pct in OVERHEAD_TARGETS}
    errors_at_target = sum(p.app.error_count for p in pairs)
    cache_p50 = {rate: [c.hits.p(50) for c in runs] for rate, runs in results.cache.items()}
    capacities = [c.capacity_rps for c in results.capacity]
    lines = [
        "## Agent app",
        "",
        f"Measured {date} on {machine}; {plan.reps} repetition(s) of each figure, "
        f"{duration_s / 60:.1f} min in all (`python -m benchmarks.app_load"
        f"{' --quick' if plan is QUICK else ''}`). Load average (1, 5, 15 min) before the "
        f"run {load[0]}, after it {load[1]}: anything above the app's own share means other "
        "work was competing for the same cores, which latency figures feel at once.",
        "",
        "### Setup",
        "",
        f"- Processes, all on 127.0.0.1 and sharing the machine's cores: `redis-server` "
        f"(password, no persistence), `agent-app devllm --latency-ms {LLM_LATENCY_MS}`, "
        f"one `agent-app serve` and {MAIN_WORKERS} `agent-app worker` (1, 2 and 4 for the "
        f"queue throughput), each worker with `AGENT_WORKER_CONCURRENCY={WORKER_CONCURRENCY}` "
        f"and `AGENT_LLM_MAX_CONCURRENCY={LLM_CONCURRENCY}` (the defaults, 4 and 8, cap a "
        "worker near 40 tasks/s with 100 ms of LLM time per task). The load generator runs "
        "in the benchmark's own process.",
        "- Path measured: `POST /v1/tasks?wait=10` with a unique task "
        '("Summarise note <run> <n>"), answered synchronously once a worker has run it: '
        "API → Redis stream → worker → plan call and answer call to devllm (no tool "
        "fits the task, so exactly two LLM calls) → result in Redis → API. Success is "
        "HTTP 200 with `status: completed`; anything else, or no answer within 15 s, is an "
        "error.",
        "- Baseline, in the same run at the same arrival rate, just before the app phase: "
        "the same two chat completions (same prompts, the answer call with the tool "
        "schemas) posted straight to devllm back to back by the same client.",
        "- **Overhead at percentile p = app latency at p minus baseline latency at p.** The "
        "baseline holds the LLM time (2 x 50 ms plus devllm's own work and the client's "
        "HTTP round trips), so the overhead is what the app adds: API, Redis, the queue, "
        "the worker, the agent and its LLM client. It is a difference of percentiles, not "
        "a percentile of per-request differences.",
        "- Load generator: open loop with an `aiohttp` client on uvloop (fixed arrival "
        "schedule, latency timed from each request's scheduled start, so a stalled app "
        "cannot slow the senders and hide its own delay). Phases of "
        f"{plan.phase_s:g} s at {TARGET_RATE:g} RPS, capacity steps of {plan.step_s:g} s, "
        "each a bounded count (rate x duration). The queue drains between phases. "
        "Percentiles are nearest-rank "
        "over the successful requests of a phase.",
        "",
        "### Targets",
        "",
        "| figure | target | measured (median of runs) | |",
        "| --- | --- | --- | --- |",
    ]
    for pct, target in OVERHEAD_TARGETS.items():
        value = statistics.median(overhead[pct])
        lines.append(
            f"| overhead p{pct} at {TARGET_RATE:g} RPS | ≤ {_ms(target)} ms | {_ms(value)} ms "
            f"| {_verdict(value <= target)} |"
        )
    lines += [
        f"| errors at {TARGET_RATE:g} RPS | 0 | {errors_at_target} (all runs) "
        f"| {_verdict(errors_at_target == 0)} |",
        *(
            f"| cache hit at {rate:g} RPS, p50 end to end | ≤ {_ms(CACHE_HIT_P50_TARGET)} ms "
            f"| {_ms(statistics.median(p50s))} ms "
            f"| {_verdict(statistics.median(p50s) <= CACHE_HIT_P50_TARGET)} |"
            for rate, p50s in cache_p50.items()
        ),
        f"| capacity (p99 overhead ≤ {_ms(CAPACITY_P99_LIMIT)} ms, no errors) "
        f"| ≥ {CAPACITY_TARGET_RPS:g} RPS | {statistics.median(capacities):g} RPS "
        f"| {_verdict(statistics.median(capacities) >= CAPACITY_TARGET_RPS)} |",
    ]
    lines += _soak_target(results.soak)
    lines += [
        "",
        f"### {TARGET_RATE:g} RPS through the app",
        "",
        "min / median / max over the runs, in ms; ratio = app ÷ baseline at the same "
        "percentile (medians).",
        "",
        "| figure | app | baseline (devllm direct) | overhead | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for pct in (50, 95, 99):
        app = [p.app.p(pct) for p in pairs]
        base = [p.base.p(pct) for p in pairs]
        ratio = statistics.median(app) / statistics.median(base)
        lines.append(
            f"| p{pct} | {_triple_ms(app)} | {_triple_ms(base)} | {_triple_ms(overhead[pct])} "
            f"| {ratio:.2f} |"
        )
    lines += [
        f"| achieved RPS | {_triple([p.app.achieved_rps for p in pairs], '{:.1f}')} "
        f"| {_triple([p.base.achieved_rps for p in pairs], '{:.1f}')} | | |",
        f"| requests per run | {pairs[0].app.sent} | {pairs[0].base.sent} | | |",
        f"| generator start lag p99 | {_triple_ms([percentile(p.app.start_lags, 99) for p in pairs])} "
        f"| {_triple_ms([percentile(p.base.start_lags, 99) for p in pairs])} | | |",
        f"| errors | {_errors([p.app for p in pairs])} | {_errors([p.base for p in pairs])} | | |",
    ]
    for role in ("api", "workers", "redis", "devllm"):
        app_cpu = [p.cpu_ms_per_request(role) for p in pairs]
        base_cpu = [p.cpu_ms_per_request(role, baseline=True) for p in pairs]
        lines.append(
            f"| CPU ms per request, {role} | {_triple(app_cpu, '{:.2f}')} "
            f"| {_triple(base_cpu, '{:.2f}')} | | |"
        )
    lines.append(
        "| CPU ms per request, load generator "
        f"| {_triple([p.app.generator_cpu_ms for p in pairs], '{:.2f}')} "
        f"| {_triple([p.base.generator_cpu_ms for p in pairs], '{:.2f}')} | | |"
    )
    lines += [
        "",
        "CPU per request is the CPU time (user + system, from /proc/<pid>/stat) each role "
        "used over the phase (and, for the app, until the queue drained), divided by the "
        "requests sent; the load generator's is its own process's CPU over the phase alone. "
        "Unlike latency it hardly depends on what else runs on the machine, "
        "so it is the steadier figure when the machine is shared. Generator start lag is how "
        "late the load generator itself started requests against the schedule (CPU "
        "starvation of its own process); it is part of the latencies above.",
        "",
        "### Cache hit",
        "",
        f"The same task submitted again at {' and '.join(f'{r:g}' for r in plan.cache_rates)} "
        f"RPS, {plan.phase_s:g} s each, after one warming submission: the API answers each "
        "at once from the result cache, with no queue, worker or LLM call (checked: "
        "`cached` true and `tokens.cached_calls` = 2, the plan and answer calls saved, on "
        "every answer, else it counts as an error). Floor: `GET /health` at the same rate "
        "just before, one request to the API that does no work: at a light rate every "
        "process sleeps between requests, and on this machine waking one is part of each "
        "hop (client, API, Redis and back), which the floor shows. Baseline: the direct "
        f"devllm pair at {TARGET_RATE:g} RPS of the same run, what the two calls the cache "
        "saves would have taken.",
        "",
        "| rate | figure | hits, min / median / max (ms) | `/health` floor (ms) "
        "| hits over the floor (ms) | ratio to baseline (medians) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rate, runs in results.cache.items():
        for pct in (50, 95, 99):
            hits = [c.hits.p(pct) for c in runs]
            floor = [c.floor.p(pct) for c in runs]
            direct = statistics.median([p.base.p(pct) for p in pairs])
            lines.append(
                f"| {rate:g} | p{pct} | {_triple_ms(hits)} | {_triple_ms(floor)} "
                f"| {_ms(statistics.median(hits) - statistics.median(floor))} "
                f"| {statistics.median(hits) / direct:.3f} |"
            )
        hit_phases = [c.hits for c in runs]
        floor_phases = [c.floor for c in runs]
        lines.append(f"| {rate:g} | errors | {_errors(hit_phases)} | {_errors(floor_phases)} | | |")
        for role in ("api", "redis"):
            hit_cpu = [c.cpu_ms_per_request(role) for c in runs]
            floor_cpu = [c.cpu_ms_per_request(role, floor=True) for c in runs]
            lines.append(
                f"| {rate:g} | CPU ms per request, {role} | {_triple(hit_cpu, '{:.2f}')} "
                f"| {_triple(floor_cpu, '{:.2f}')} "
                f"| {statistics.median(hit_cpu) - statistics.median(floor_cpu):.2f} | |"
            )
    every_run = [c for runs in results.cache.values() for c in runs]
    extra_api = statistics.median(
        c.cpu_ms_per_request("api") - c.cpu_ms_per_request("api", floor=True) for c in every_run
    )
    floor_p50 = statistics.median(c.floor.p(50) for c in every_run)
    lines += [
        "",
        f"A hit costs the API {extra_api:.2f} ms of CPU more than `/health` (median of "
        "every run): FastAPI's parsing and validation of the body and headers, the API key, "
        "the two Redis round trips, the log line and the metrics. With the `/health` p50 "
        f"floor at {_ms(floor_p50)} ms, the {_ms(CACHE_HIT_P50_TARGET)} ms target leaves "
        f"{_ms(CACHE_HIT_P50_TARGET - floor_p50)} ms for all of that on this machine.",
        "",
        "### Capacity",
        "",
        f"Rates stepped up from {TARGET_RATE:g} RPS "
        f"({', '.join(f'{r:g}' for r in plan.capacity_steps)}), or down "
        f"({', '.join(f'{r:g}' for r in plan.capacity_below)}) when {TARGET_RATE:g} RPS "
        "already fails; each step's baseline is measured just before it at the same rate. "
        f"A step fails when its p99 overhead passes {_ms(CAPACITY_P99_LIMIT)} ms or it has an "
        "error; stepping stops at the first change of outcome. Capacity is the highest rate "
        "below the lowest failed one (0: every step tried failed).",
        "",
        "| run | rate | achieved | app p50 / p99 (ms) | baseline p50 / p99 (ms) "
        "| overhead p99 (ms) | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run, cap in enumerate(results.capacity, 1):
        for pair in cap.steps:
            lines.append(
                f"| {run} | {pair.app.rate:g} | {pair.app.achieved_rps:.1f} "
                f"| {_ms(pair.app.p(50))} / {_ms(pair.app.p(99))} "
                f"| {_ms(pair.base.p(50))} / {_ms(pair.base.p(99))} "
                f"| {_ms(pair.overhead(99))} | {_errors([pair.app])} |"
            )
    lines += [
        "",
        f"Capacity per run (RPS): {', '.join(f'{c:g}' for c in capacities)}; "
        f"min / median / max {_triple(capacities, '{:g}')}.",
        "",
        "### Queue throughput",
        "",
        f"{plan.queue_tasks} unique tasks submitted through the API without `wait` (64 "
        "submissions in flight), timed from the first submission until the stream has no "
        "entry pending or undelivered. Each task is two 50 ms LLM calls. Baseline: one "
        "worker.",
        "",
        "| workers | tasks/s, min / median / max | ratio to 1 worker (medians) "
        "| submissions refused (all runs) |",
        "| --- | --- | --- | --- |",
    ]
    one = statistics.median(results.queue[min(results.queue)].samples)
    for workers, series in sorted(results.queue.items()):
        lines.append(
            f"| {workers} | {series.min:.0f} / {series.median:.0f} / {series.max:.0f} "
            f"| {series.median / one:.2f} | {results.queue_refused[workers]} |"
        )
    lines += _soak_section(results.soak)
    lines += _cpu_budget(pairs)
    lines += ["", *PROFILE_NOTES]
    return "\n".join(lines) + "\n"


def _soak_target(result: Soak | None) -> list[str]:
    if result is None:
        return []
    first, last = result.samples[0][1], result.samples[-1][1]
    growth = max(last[name] - first[name] for name in first)
    # "Flat": no process grows by more than 10 % (or 10 MiB, whichever is larger).
    flat = all(last[n] - first[n] <= max(10.0, 0.1 * first[n]) for n in first)
    return [
        f"| RSS over the {result.duration_s:g} s soak | flat (≤ +10 % or +10 MiB per "
        f"process) | largest growth {growth:+.1f} MiB | {_verdict(flat)} |"
    ]


def _soak_section(result: Soak | None) -> list[str]:
    if result is None:
        return []
    names = list(result.samples[0][1])
    lines = [
        "",
        "### Soak",
        "",
        f"{result.duration_s:g} s at {result.rate:g} RPS on the same path, "
        f"{result.phase.sent} requests, errors: {_errors([result.phase])}, "
        f"p50 / p95 / p99 {_ms(result.phase.p(50))} / {_ms(result.phase.p(95))} / "
        f"{_ms(result.phase.p(99))} ms end to end (generator start lag p99 "
        f"{_ms(percentile(result.phase.start_lags, 99))} ms). VmRSS from /proc/<pid>/status in MiB "
        "(the last row after the queue drained).",
        "",
        "| time (s) | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for at, rss in result.samples:
        lines.append(f"| {at:.0f} | " + " | ".join(f"{rss[n]:.1f}" for n in names) + " |")
    first, last = result.samples[0][1], result.samples[-1][1]
    lines.append("| change | " + " | ".join(f"{last[n] - first[n]:+.1f}" for n in names) + " |")
    return lines


def _cpu_budget(pairs: Sequence[Pair]) -> list[str]:
    """What the CPU per task implies for the rates the machine can carry at all."""
    app = statistics.median(
        sum(p.cpu_ms_per_request(role) for role in ("api", "workers", "redis")) for p in pairs
    )
    llm = statistics.median(p.cpu_ms_per_request("devllm") for p in pairs)
    generator = statistics.median(p.app.generator_cpu_ms for p in pairs)
    cores = os.cpu_count() or 1
    per_task = app + llm + generator
    busy_ms = 700  # CPU ms per core per second at 70 % busy, where queueing takes over
    return [
        "",
        "### CPU budget",
        "",
        f"At {TARGET_RATE:g} RPS the app's processes (API, workers, redis) used {app:.1f} ms "
        f"of CPU per task, devllm {llm:.1f} ms and the load generator (same machine, its "
        f"own process) {generator:.1f} ms (medians). {TARGET_RATE:g} tasks/s therefore need "
        f"{(app + llm) * TARGET_RATE / 1000:.2f} of the machine's {cores} cores, "
        f"{per_task * TARGET_RATE / 1000:.2f} with the generator, before "
        "anything else running; on CPU alone the ceiling is about "
        f"{cores * 1000 / (app + llm):.0f} tasks/s "
        f"({cores * 1000 / per_task:.0f} with the generator). Past about 70 % "
        "of the cores, queueing for CPU dominates the latency, so the latency targets fail "
        "well before that ceiling.",
        "",
        f"The capacity target, {CAPACITY_TARGET_RPS:g} RPS, needs "
        f"{per_task * CAPACITY_TARGET_RPS / 1000:.1f} cores at these costs (generator "
        f"included), {per_task * CAPACITY_TARGET_RPS / busy_ms:.1f} to stay under 70 %. On "
        f"{cores} cores that means the whole pipeline in under "
        f"{cores * busy_ms / CAPACITY_TARGET_RPS:.1f} ms of CPU per task, against "
        f"{per_task:.1f} ms measured here. The latency targets at {TARGET_RATE:g} RPS need "
        f"it under {cores * busy_ms / TARGET_RATE:.1f} ms by the same rule, which is needed "
        "for them but does not promise them.",
    ]


PROFILE_NOTES = [
    "### Profile and what changed",
    "",
    "py-spy (`py-spy record -r 200 -f raw --pid`, on the API, a worker and devllm at 100 "
    "and 30 RPS) before any change showed:",
    "",
    "- **API: the `?wait=` path polled.** `_maybe_wait` re-read the whole task hash "
    "(`HGETALL` + JSON decoding) every 50 ms for every waiting request: 21 % of the API's "
    "samples were in that loop. It also added 25 ms on average (up to 50) to every answer, "
    "and under a backlog the polls multiplied until the API's Redis pool (100 connections, "
    "failing fast) ran out: `MaxConnectionsError` answered as HTTP 503 (175 of 500 "
    "requests at 100 RPS in the first run). Now a worker publishes the task id on "
    "`<task stream>:done` when the task is final (`agent_app/worker.py`, one `PUBLISH` "
    "after the final write) and the API holds one subscription that wakes exactly the "
    "requests waiting for that task (`agent_app/completions.py`); a waiting request still re-reads "
    "every 0.5 s, so a message lost while the subscription reconnects costs at most that.",
    '- **API: `@app.middleware("http")`** (Starlette\'s BaseHTTPMiddleware) ran every '
    "request through an extra task and memory streams. It is now a plain ASGI middleware "
    "(same headers, same gauge); the API CPU figures below cover both API changes.",
    "- **API and workers: Redis pool exhaustion.** After the two changes above, a 100 RPS "
    "phase on the busy machine still lost 132 of 600 requests to HTTP 503: bursts had more "
    "than 100 commands in flight and redis-py's default pool fails at once. "
    "`agent_app/runtime.py` now uses a blocking pool (same 100 connections, a command "
    "waits up to 5 s for one); the same phase then had no errors.",
    "- **Worker: the openai SDK's request transform** (`chat.completions.create` walks the "
    "messages and tool schemas against its TypedDicts) was 8 % of a worker's samples. "
    "Posting the same body with the client's lower-level `post` made no difference beyond "
    "the noise of A/B runs at first (worker CPU per task 12.5 ms after, 12.6 to 13.1 ms "
    "before), so the SDK's documented call stayed; see below for the second look.",
    "- **API and workers: uvicorn's pure-Python HTTP parser and event loop.** uvloop and "
    "httptools are now dependencies: uvicorn picks them up, and the worker runs on uvloop.",
    "",
    "Before and after, same machine and method (1 API, 2 workers, 30 RPS for 10 s, the "
    "direct devllm baseline at 30 RPS just before; the old code run from an export of the "
    "commit before the change; two alternating runs each, load average 3.5 to 4.6 from "
    "other work on the machine, which is why the latency spread is wide):",
    "",
    "| figure | before (run 1, run 2) | after (run 1, run 2) |",
    "| --- | --- | --- |",
    "| API CPU per task | 6.8, 7.1 ms | 3.9, 3.9 ms |",
    "| workers' CPU per task | 15.4, 13.1 ms | 13.1, 12.6 ms |",
    "| app p50 at 30 RPS (baseline p50 ~116 ms) | 187, 1539 ms | 164, 152 ms |",
    "| cache hit p50 (20 RPS) | 61.4, 63.4 ms | 14.3, 10.7 ms |",
    "| cache hit p99 (20 RPS) | 77.1, 80.9 ms | 32.4, 20.8 ms |",
    "",
    "The two processes beside the app, which take CPU from the same cores, were made "
    "cheaper too (A/B runs alternating old and new code, load average 2 to 7 from other "
    "work on the machine):",
    "",
    "- **Load generator: httpx.** `httpx.AsyncClient` on asyncio used 2.3 ms of CPU per "
    "POST with about 5 requests in flight and 5.6 to 6.5 ms with about 300. When the app "
    "fell behind, the generator starved itself: 7 to 18 ms per request in 100 RPS phases "
    "on the busy machine, where even the direct-devllm baseline's p50 reached seconds. "
    "aiohttp on uvloop uses 0.9 and 1.2 to 1.7 ms per POST, and 0.8 to 1.7 ms per request "
    "in the same phases (baseline p50 104 to 110 ms). uvloop's `loop.time()` counts whole "
    "milliseconds, so requests are timed with `time.perf_counter()`.",
    "- **devllm: FastAPI's request handling.** The chat route's body went through "
    "FastAPI's parsing and validation, and the whole request was serialised again to hash "
    "the answer's id: about 120 µs of Python per call in process. A plain Starlette route "
    "that reads the body with `json.loads` and hashes the request's bytes takes 40 to "
    "60 µs; served by uvicorn, devllm's CPU per call went from 0.66 to 0.89 ms to 0.53 to "
    "0.64 ms (the rest is uvicorn and the socket calls). A body that is not a JSON object "
    "now gets an OpenAI-style 400, not FastAPI's 422.",
    "",
    "A second profile of the worker (py-spy at 50 RPS) then showed the openai SDK at 35 % "
    "of its samples and redis-py at 21 %, some 14 round trips per task; the API's time was "
    "FastAPI's request handling, redis-py and the event loop's socket calls. What changed:",
    "",
    "- **Worker: the LLM client's transport and request path.** The SDK's documented "
    "aiohttp transport (`openai[aiohttp]`, `DefaultAioHttpClient`) instead of its httpx "
    "one: 1.6 and 2.0 ms of CPU per call against 2.1 and 2.6 (alternating runs, 8 calls in "
    "flight, tool schemas attached). And the call goes through the SDK's `client.post` "
    "with `cast_to=ChatCompletion` (same request path, status errors, timeouts and "
    "parsing) without `create`'s TypedDict walk of the body: 0.86 to 1.01 ms per call "
    "against 1.60 to 2.40 in four alternating runs on the aiohttp transport.",
    "- **Worker: Redis round trips, 14 to 7 per task** (start, two LLM-cache reads, two "
    "charges, the result-cache write, finish). Starting a task returns its record "
    "and its tenant's spend from the same script (were an `HGETALL` and the budget "
    "`HGET`); the final write, the completion message and the acknowledgement are one "
    "script (were three commands); each LLM call's charge and its cache entry are one "
    "transaction (were two); a task without a session neither reads nor keeps a history "
    "no other task can have.",
    "- **API: the completion message carries the final record.** A request waiting for "
    "its task answers from the message, without reading the record back (one round trip "
    "less per waited-for task).",
    "- **API: result cache.** A repeated task without a session whose tools were all "
    "deterministic is answered by the API from the stored result (`agent:result:*`, per "
    "tenant), without the stream, a worker or the two LLM-cache lookups; before, a cache "
    "hit still went through the queue and a worker. A hit is two round trips: the "
    "tenant's budget, then one script that reads the stored result and writes the task's "
    "final record from it. A waited-for task that was just "
    "enqueued is no longer read before its completion message arrives.",
    "",
    "Before and after these changes (1 API, 2 workers, 50 RPS for 10 s, unique tasks; "
    "the old code run from an export of the commit before them; three alternating runs "
    "each, load average 1.9 to 3.3 from other work on the machine, so the absolute figures "
    "are above a quiet machine's):",
    "",
    "| figure | before (runs 1, 2, 3) | after (runs 1, 2, 3) |",
    "| --- | --- | --- |",
    "| workers' CPU per task | 14.4, 12.3, 15.6 ms | 9.6, 9.7, 10.7 ms |",
    "| API CPU per task | 5.3, 3.7, 6.6 ms | 3.6, 3.8, 4.0 ms |",
    "",
    "That table was measured on an AMD EPYC machine, before three of the changes above: "
    "the start script returning the tenant's spend, the completion message carrying the "
    "final record, and the cache hit in one script. Those three were measured apart on an "
    "Intel Xeon machine (2 vCPUs, with steal), the old code from an export of 7a11a91. "
    "Each run had 1 API and 2 workers, unique tasks at 50 RPS for 20 s, then cache hits "
    "at 20 RPS for 15 s. There were six alternating pairs, with load average 0.8 to 1.2. "
    "The machine's speed drifted between pairs by more than the change, so the paired "
    "differences count, not the spreads:",
    "",
    "| figure | before, min / median / max | after, min / median / max "
    "| paired difference, median | after lower in |",
    "| --- | --- | --- | --- | --- |",
    "| API CPU per task | 4.84 / 5.44 / 5.98 ms | 4.22 / 5.26 / 5.67 ms | -0.48 ms | 5 of 6 |",
    "| workers' CPU per task | 13.8 / 15.2 / 16.7 ms | 12.7 / 15.5 / 16.7 ms | -0.45 ms | 3 of 6 |",
    "| API CPU per cache hit | 3.90 / 4.25 / 5.50 ms | 2.87 / 3.98 / 4.30 ms | -0.57 ms | 5 of 6 |",
    "| cache hit p50, end to end | 4.99 / 5.66 / 8.65 ms | 3.93 / 5.48 / 5.71 ms | -0.58 ms "
    "| 5 of 6 |",
    "",
    "So the API's two changes show: about half a millisecond of CPU less per task and per "
    "hit, and a hit's p50 lower by about as much. The worker's saved `HGET` is within "
    "the noise of these runs.",
    "",
    "- **Worker: the LLM connections' keep-alive.** Two runs of this benchmark had one "
    "queue-throughput run with 4 workers at 5 and 10 tasks/s, against about 100 for the "
    "others. The workers' logs (`python -m benchmarks.app_load --logs DIR`) showed why. "
    "The burst after the pause in which the new workers start went out on pooled "
    "connections that devllm was closing: uvicorn's keep-alive is 5 s, and so was the "
    "SDK's default for idle connections. aiohttp's `ServerDisconnectedError` is reported "
    "by the SDK as a timeout, and dozens of them at once opened a worker's circuit for "
    "30 s. Its tasks failed their attempt and waited for the 60 s reclaim. Idle LLM "
    "connections now expire after 2 s (`AGENT_LLM_KEEPALIVE_S`), and "
    "`tests/app/test_app_llm_keepalive.py` plays that moment against the client. A "
    "deployment meets the same thing after any lull of about 5 s in front of vLLM.",
]
