"""`agent-app dlq`: operators list, inspect and replay dead-lettered tasks."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from app.appkit import AGENT_APP, Client, DevLLM, Env, Service

pytestmark = pytest.mark.redis

DEAD = "agent:tasks:dead"


def dlq(env: Env, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    done = subprocess.run(
        [AGENT_APP, "dlq", *args],
        env=env.process_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, lines, done.stderr


def test_dead_letters_are_listed_inspected_and_replayed(
    acme: Client,
    globex: Client,
    worker_factory: Callable[..., Service],
    devllm: DevLLM,
    base_env: Env,
    clean_redis: redis.Redis,
) -> None:
    devllm.fault(fail_next=1000, status=503)
    worker_factory(claim_idle_ms=500, shutdown_grace_s=0.4, max_attempts=2)
    acme_id = acme.submit("compute 5 + 5").json()["id"]
    globex_id = globex.submit("compute 6 + 6").json()["id"]
    for task_id, client in ((acme_id, acme), (globex_id, globex)):
        assert client.wait_final(task_id)["status"] == "dead_lettered"

    code, listed, _ = dlq(base_env, "list")
    assert code == 0
    assert {(d["task_id"], d["tenant"]) for d in listed} == {
        (acme_id, "acme"),
        (globex_id, "globex"),
    }
    assert all("HTTP 503" in d["error"] and d["attempts"] == 2 for d in listed)
    code, only_acme, _ = dlq(base_env, "list", "--tenant", "acme")
    assert [d["task_id"] for d in only_acme] == [acme_id]

    code, [shown], _ = dlq(base_env, "show", acme_id)
    assert code == 0
    assert shown["tenant"] == "acme"
    assert shown["task"]["status"] == "dead_lettered"
    assert [d["task_id"] for d in shown["dead_letters"]] == [acme_id]

    httpx.delete(f"{devllm.url}/admin/faults", timeout=5).raise_for_status()
    code, [replayed], _ = dlq(base_env, "replay", acme_id)
    assert code == 0
    assert replayed["replayed"] is True
    body = acme.wait_final(acme_id)
    assert body["status"] == "completed"
    assert "5 + 5 = 10" in body["result"]
    assert body["attempts"] == 1
    assert body["error"] is None
    code, left, _ = dlq(base_env, "list")
    assert [d["task_id"] for d in left] == [globex_id]

    # A completed task is not reopened, and an unknown one is reported.
    code, [again], _ = dlq(base_env, "replay", acme_id)
    assert code == 1
    assert again == {
        "task_id": acme_id,
        "replayed": False,
        "entry": None,
        "reason": "task is completed, not dead-lettered",
    }
    code, _, stderr = dlq(base_env, "show", "no-such-task")
    assert code == 1
    assert "no task 'no-such-task'" in stderr

    code, everything, _ = dlq(base_env, "replay", "--all")
    assert code == 0
    assert [r["task_id"] for r in everything] == [globex_id]
    assert globex.wait_final(globex_id)["status"] == "completed"
    assert clean_redis.xlen(DEAD) == 0


def test_replay_needs_task_ids_or_all(base_env: Env) -> None:
    code, _, stderr = dlq(base_env, "replay")
    assert code == 2
    assert "--all" in stderr
