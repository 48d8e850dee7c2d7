"""Cross-tenant probe: tenant B submits texts tenant A sent before and twins of the same
shape that nobody sent, with and without sessions (the call cache and the result cache).
Nothing B can see may differ between the two: status codes, headers, tokens, cost, cache
flags, attempts, and the LLM calls it caused. Answer times are recorded, not asserted
(speed is the benchmarks' business)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from app.appkit import Client, DevLLM, Env, Service

from faults.campaign import record
from faults.stack import RedisProcess, WorkerPool, campaign_env

pytestmark = [pytest.mark.redis, pytest.mark.timeout(300)]

PAIRS = 12


def _text(pin: int, a: int, b: int) -> str:
    return f"Please note my PIN is {pin}; compute {a} * {b}"


def _pair(i: int) -> tuple[str, str]:
    """A text A sends and its twin: same length, same tool call shape, an answer of the
    same length (three-digit products both)."""
    return _text(4000 + i, 100 + i, 2), _text(7000 + i, 130 + i, 3)


def _observable(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    return {
        "status_code": response.status_code,
        "headers": sorted(
            name for name in response.headers if name not in ("date", "content-length")
        ),
        "status": body["status"],
        "tokens": body["tokens"],
        "cost_usd": body["cost_usd"],
        "cached": body["cached"],
        "attempts": body["attempts"],
        "model": body["model"],
        "steps": [step["type"] for step in body["steps"] or []],
    }


def test_cross_tenant_probe_sees_no_difference(
    redis_factory: Callable[[bool], RedisProcess],
    devllm_factory: Callable[..., DevLLM],
    api_factory: Callable[[Env], Service],
    worker_pool: Callable[[Env], WorkerPool],
) -> None:
    began = time.monotonic()
    server = redis_factory(False)
    llm = devllm_factory()
    # One variant for everyone, so both tenants' conversations are the same text for text.
    env = campaign_env(server.url, llm.base_url, experiment_variants='{"control": 1}')
    api = api_factory(env)
    pool = worker_pool(env)
    pool.start(1)
    acme, globex = Client(api.url, "acme"), Client(api.url, "globex")

    # Each text is sent once per tenant, in a session (only the call cache could answer)
    # or without one (the result cache could too): a tenant's own caches stay out of it.
    modes = {"session": 0, "no session": 50}
    for i in range(PAIRS):
        for mode, offset in modes.items():
            extra = {"session_id": f"a-{i}"} if mode == "session" else {}
            seen, _ = _pair(i + offset)
            assert acme.submit(seen, wait=60, **extra).json()["status"] == "completed"

    differences: list[tuple[int, str, dict[str, Any], dict[str, Any]]] = []
    llm_calls: dict[str, list[int]] = {"seen": [], "unseen": []}
    seconds: dict[str, list[float]] = {"seen": [], "unseen": []}
    for i in range(PAIRS):
        for mode, offset in modes.items():
            views: dict[str, dict[str, Any]] = {}
            for kind, text in zip(("seen", "unseen"), _pair(i + offset), strict=True):
                extra = {"session_id": f"b-{kind}-{i}"} if mode == "session" else {}
                before = llm.total_requests()
                started = time.perf_counter()
                response = globex.submit(text, wait=60, **extra)
                seconds[kind].append(time.perf_counter() - started)
                llm_calls[kind].append(llm.total_requests() - before)
                views[kind] = _observable(response)
            if views["seen"] != views["unseen"]:
                differences.append((i, mode, views["seen"], views["unseen"]))

    # The caches do work, within a tenant: acme's repeat in a new session hits every call.
    again = acme.submit(_pair(0)[0], wait=60, session_id="a-again").json()
    acme.http.close()
    globex.http.close()

    record(
        "cross-tenant-probe",
        tried={"texts another tenant sent": PAIRS * 2, "twins nobody sent": PAIRS * 2},
        lost={"observable differences": len(differences)},
        figures={
            "LLM calls per task, seen": statistics.mean(llm_calls["seen"]),
            "LLM calls per task, unseen": statistics.mean(llm_calls["unseen"]),
            "median answer s, seen": round(statistics.median(seconds["seen"]), 4),
            "median answer s, unseen": round(statistics.median(seconds["unseen"]), 4),
            "acme's own repeat: cached calls": again["tokens"]["cached_calls"],
        },
        seconds=time.monotonic() - began,
    )

    assert differences == []
    assert llm_calls["seen"] == llm_calls["unseen"]
    assert set(llm_calls["seen"]) == {3}
    assert again["tokens"]["cached_calls"] == 3
