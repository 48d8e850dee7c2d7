"""Bounded admission: past its limit the API refuses a task at once (503 for a service at
capacity, 429 for a tenant over its fair share), with a Retry-After, and queues, writes
and reserves nothing for it; a tenant below its share is still admitted; cached results
are still answered; the limit follows the rate at which tasks finish."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from agent_app.admission import RECALL_MAX_S, Load
from agent_app.keys import (
    RESERVED_TOTAL,
    TASK_STREAM,
    outstanding_key,
    reservations_key,
    throughput_key,
)
from agent_app.settings import SettingsError, load_settings
from app.appkit import Client, DevLLM, Env, Service, metric_value, start_service, stop

# These tests start or use a real redis-server.
pytestmark = pytest.mark.redis

FLOOR = 4
MAX_LATENCY_S = 10


@pytest.fixture
def limited_api(base_env: Env, tmp_path: Path) -> Iterator[Service]:
    """An API admitting at most FLOOR outstanding tasks while none finish."""
    env = base_env.with_(admission_min_tasks=FLOOR, admission_max_latency_s=MAX_LATENCY_S)
    service = start_service(env, "serve", tmp_path)
    yield service
    stop(service.proc)


@pytest.fixture
def clients(limited_api: Service, clean_redis: redis.Redis) -> Iterator[dict[str, Client]]:
    found = {tenant: Client(limited_api.url, tenant) for tenant in ("acme", "globex")}
    yield found
    for client in found.values():
        client.http.close()


def _unique() -> str:
    # Words only: no tool, and never a stored result.
    return f"Summarise note {uuid.uuid4().hex}"


def _stored(r: redis.Redis) -> dict[str, object]:
    """What admissions leave in Redis: entries, records, reservations, counts."""
    return {
        "entries": r.xlen(TASK_STREAM),
        "records": len(list(r.scan_iter("agent:task:*"))),
        "reserved": {
            tenant: len(r.hkeys(reservations_key(tenant))) - 1
            if r.exists(reservations_key(tenant))
            else 0
            for tenant in ("acme", "globex")
        },
        "outstanding": r.hgetall(outstanding_key(TASK_STREAM)),
    }


def _refusals(api: Service, reason: str) -> float:
    return metric_value(api.metrics_url, "agent_admission_refusals_total", reason=reason)


def test_a_full_service_refuses_at_once_and_stores_nothing(
    clients: dict[str, Client], clean_redis: redis.Redis, limited_api: Service
) -> None:
    acme = clients["acme"]
    accepted = [acme.submit(_unique()) for _ in range(FLOOR)]
    assert [r.status_code for r in accepted] == [202] * FLOOR
    before = _stored(clean_redis)
    assert before["entries"] == before["records"] == FLOOR
    assert before["outstanding"] == {"acme": str(FLOOR)}
    spent_before = clean_redis.hget(reservations_key("acme"), RESERVED_TOTAL)

    refused = acme.submit(_unique(), wait=5)
    assert refused.status_code == 503
    body = refused.json()
    assert body["limit"] == "capacity"
    assert body["fields"] == []
    assert "at capacity" in body["error"]
    assert f"{MAX_LATENCY_S} s" in body["error"]
    # No task has finished yet, so nothing says how fast the backlog goes: the limit.
    assert refused.headers["Retry-After"] == str(MAX_LATENCY_S)
    # Nothing queued, written, reserved or counted for it.
    assert _stored(clean_redis) == before
    assert clean_redis.hget(reservations_key("acme"), RESERVED_TOTAL) == spent_before
    assert _refusals(limited_api, "capacity") == 1


def test_a_tenant_below_its_share_is_admitted_into_a_full_service(
    clients: dict[str, Client], clean_redis: redis.Redis, limited_api: Service
) -> None:
    acme, globex = clients["acme"], clients["globex"]
    assert [acme.submit(_unique()).status_code for _ in range(FLOOR)] == [202] * FLOOR
    assert acme.submit(_unique()).status_code == 503
    # Two tenants with work: each one's fair share is half the limit.
    assert [globex.submit(_unique()).status_code for _ in range(FLOOR // 2)] == [202, 202]
    over = globex.submit(_unique())
    assert over.status_code == 429
    assert over.json()["limit"] == "tenant_share"
    assert "'globex' has 2 tasks queued or running" in over.json()["error"]
    assert int(over.headers["Retry-After"]) >= 1
    # The tenant with the backlog is now over its share, and told so (once the moment in
    # which the API answers acme with its last refusal is over).
    time.sleep(RECALL_MAX_S)
    again = acme.submit(_unique())
    assert again.status_code == 429
    assert again.json()["limit"] == "tenant_share"
    assert _stored(clean_redis)["outstanding"] == {"acme": str(FLOOR), "globex": "2"}
    assert _stored(clean_redis)["entries"] == FLOOR + 2
    assert _refusals(limited_api, "tenant_share") == 2


def test_the_limit_follows_the_rate_tasks_finish_at(
    clients: dict[str, Client], clean_redis: redis.Redis
) -> None:
    # Tasks finishing at 2 a second: 10 s of them is 20 outstanding tasks. Stamped
    # ahead of Redis' clock, so the rate does not decay while the test runs.
    now = int(clean_redis.time()[0])
    clean_redis.hset(throughput_key(TASK_STREAM), mapping={"rate": 2.0, "at": now + 60})
    acme = clients["acme"]
    statuses = [acme.submit(_unique()).status_code for _ in range(21)]
    assert statuses == [202] * 20 + [503]
    # One task over the limit at two a second: back under it in half a second.
    assert acme.submit(_unique()).headers["Retry-After"] == "1"


def test_a_stored_result_is_answered_however_full_the_service_is(
    base_env: Env,
    tmp_path: Path,
    devllm: DevLLM,
    clients: dict[str, Client],
    worker_factory: Callable[..., Service],
) -> None:
    acme = clients["acme"]
    worker = worker_factory()
    first = acme.submit("compute 6 * 7", wait=30)
    assert first.json()["status"] == "completed"
    stop(worker.proc)
    statuses = [acme.submit(_unique()).status_code for _ in range(FLOOR + 1)]
    assert statuses[-1] == 503
    # Past the moment in which the API answers acme with that refusal at once.
    time.sleep(RECALL_MAX_S)
    again = acme.submit("compute 6 * 7")
    assert again.status_code == 200
    assert again.json()["cached"] is True


def test_a_refused_tenant_is_answered_at_once_for_a_moment(
    clients: dict[str, Client], clean_redis: redis.Redis, limited_api: Service
) -> None:
    """After a load refusal, the API answers the tenant's next submissions the same way
    without parsing them or asking Redis, until the backlog could have room for it (here,
    with nothing finishing, for RECALL_MAX_S); other tenants, and requests that may replay
    an admitted task, still go to Redis."""
    acme, globex = clients["acme"], clients["globex"]
    assert [acme.submit(_unique()).status_code for _ in range(FLOOR)] == [202] * FLOOR
    first = acme.submit(_unique())
    assert first.status_code == 503
    clean_redis.config_resetstat()
    started = time.monotonic()
    answers = [acme.submit(_unique()) for _ in range(20)]
    elapsed = time.monotonic() - started
    admissions = _admissions(clean_redis)
    assert {(a.status_code, a.headers["Retry-After"]) for a in answers} == {
        (503, first.headers["Retry-After"])
    }
    assert {a.json()["limit"] for a in answers} == {"capacity"}
    # One admission in Redis per moment at most (each refusal starts a new one).
    assert admissions <= 1 + elapsed / RECALL_MAX_S
    assert _refusals(limited_api, "capacity") == 21
    # Another tenant is below its share: admitted, by Redis.
    assert globex.submit(_unique()).status_code == 202
    # A submission with an Idempotency-Key goes to Redis, whatever it gets there.
    clean_redis.config_resetstat()
    replay = acme.submit(_unique(), idempotency_key="k1")
    assert replay.status_code in (429, 503)
    assert _admissions(clean_redis) == 1


def _admissions(r: redis.Redis) -> int:
    """Admission scripts run since the statistics were reset."""
    stats = r.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_retry_after_is_how_long_the_backlog_takes_to_fall_under_the_limit() -> None:
    # One tenant, 30 tasks against a limit of 20, 2 finishing a second: 11 to go, 5.5 s.
    assert Load(30, 20.0, 30, 1, 2.0).retry_after_s(60) == 6
    assert Load(30, 20.0, 30, 1, 2.0).reason == "capacity"
    # Two tenants: this one holds 15 of 25 against a share of 10; its tasks finish at
    # 15/25 of 2 a second, so its 6 over the share take 5 s.
    load = Load(25, 20.0, 15, 2, 2.0)
    assert load.reason == "tenant_share"
    assert load.retry_after_s(60) == 5
    # Past twice the limit everyone is refused for capacity.
    assert Load(41, 20.0, 1, 3, 2.0).reason == "capacity"
    # Bounded by the latency limit, and at least a second.
    assert Load(1000, 20.0, 1000, 1, 2.0).retry_after_s(60) == 60
    assert Load(21, 20.0, 21, 1, 100.0).retry_after_s(60) == 1
    assert Load(21, 20.0, 21, 1, 0.0).retry_after_s(7.5) == 8


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AGENT_ADMISSION_MAX_LATENCY_S", "0"),
        ("AGENT_ADMISSION_MAX_LATENCY_S", "inf"),
        ("AGENT_ADMISSION_MIN_TASKS", "0"),
        ("AGENT_ADMISSION_MIN_TASKS", "many"),
    ],
)
def test_admission_settings_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_refusals_are_documented_in_the_openapi_document(limited_api: Service) -> None:
    document = httpx.get(f"{limited_api.url}/openapi.json", timeout=5).json()
    responses = document["paths"]["/v1/tasks"]["post"]["responses"]
    assert {"429", "503"} <= set(responses)
    limit = json.dumps(document["components"]["schemas"]["ErrorBody"]["properties"]["limit"])
    assert '"capacity"' in limit
    assert '"tenant_share"' in limit
