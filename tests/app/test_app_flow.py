"""End-to-end: API -> Redis stream -> worker -> dev LLM -> tools -> result."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import redis

from app.appkit import Client, DevLLM, Env, Service, free_port, start_service, stop

# These tests start or use a real redis-server.
pytestmark = pytest.mark.redis


def test_task_runs_tools_and_reports_steps_tokens_and_cost(
    acme: Client, worker: Service, devllm: DevLLM
) -> None:
    response = acme.submit("What is (17 + 25) * 3? Also remember that my color is teal.")
    assert response.status_code == 202, response.text
    assert response.headers["X-Release-Version"] == "1.2.3"
    assert response.headers["X-Release-Track"] == "canary"
    task_id = response.json()["id"]
    assert response.headers["Location"] == f"/v1/tasks/{task_id}"

    body = acme.wait_final(task_id)
    assert body["status"] == "completed", body
    assert "(17 + 25) * 3 = 126" in body["result"]
    kinds = [step["type"] for step in body["steps"]]
    assert kinds[0] == "plan"
    assert kinds[-1] == "answer"
    tools = [step["tool"] for step in body["steps"] if step["type"] == "tool"]
    assert tools == ["calculator", "memory_set"]
    assert body["tokens"]["input"] > 0
    assert body["tokens"]["output"] > 0
    assert body["cost_usd"] > 0
    assert body["model"] in body["selection"]["reason"]
    assert body["attempts"] == 1


def test_session_memory_carries_between_tasks(
    acme: Client, worker: Service, clean_redis: redis.Redis
) -> None:
    first = acme.submit("remember that my city is Lisbon", wait=60, session_id="s1")
    assert first.status_code == 200
    assert first.json()["status"] == "completed"
    second = acme.submit("recall my city please", wait=60, session_id="s1")
    assert "city is Lisbon" in second.json()["result"]
    other = acme.submit("recall my city please", wait=60, session_id="s2")
    assert "nothing remembered for city" in other.json()["result"]
    ttl = clean_redis.ttl("agent:memory:acme:s1")
    assert 0 < ttl <= 3600


def _prompt_tokens(content: str) -> int:
    """devllm's count for one message: a quarter of its JSON-encoded length, plus one."""
    return len(json.dumps(content)) // 4 + 1


def test_shared_session_replays_its_last_turns_into_the_prompt(
    acme: Client, worker: Service, clean_redis: redis.Redis
) -> None:
    """The answer call of a task in a shared session carries the session's earlier turns
    (user, then assistant) and nothing else: the prompt grows by exactly their tokens."""
    turns = [f"Summarise the weather report number {n}" for n in range(4)]
    answers = []
    for task in turns:
        body = acme.submit(task, wait=60, session_id="h1").json()
        assert body["status"] == "completed", body
        answers.append(body["result"])
    # Same length as the last turn, so the plan and answer calls differ only by history.
    alone = acme.submit("Summarise the weather report number 9", wait=60, session_id="h2").json()
    in_session = acme.submit("Summarise the weather report number 8", wait=60, session_id="h1")

    replayed = list(zip(turns[1:], answers[1:], strict=True))  # the last three turns
    expected = sum(_prompt_tokens(user) + _prompt_tokens(said) for user, said in replayed)
    assert in_session.json()["tokens"]["input"] - alone["tokens"]["input"] == expected

    kept = [json.loads(item) for item in clean_redis.lrange("agent:session:acme:h1", 0, -1)]
    assert [m["role"] for m in kept] == ["user", "assistant"] * 3
    assert [m["content"] for m in kept[:2]] == [turns[2], answers[2]]
    assert kept[-2]["content"] == "Summarise the weather report number 8"
    assert 0 < clean_redis.ttl("agent:session:acme:h1") <= 3600


def test_wait_returns_the_final_result(acme: Client, worker: Service) -> None:
    response = acme.submit("compute 6 * 7", wait=60)
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert "6 * 7 = 42" in response.json()["result"]


def test_wait_without_worker_returns_202_with_queued_status(acme: Client) -> None:
    response = acme.submit("compute 1 + 1", wait=0.3)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"


def test_fetch_tool_reads_only_allowlisted_urls(
    acme: Client, worker: Service, devllm: DevLLM
) -> None:
    ok = acme.submit(f"summarise {devllm.url}/pages/fox", wait=60).json()
    assert "the quick brown fox" in ok["result"]
    refused = acme.submit(f"summarise {devllm.url}/admin/stats", wait=60).json()
    assert "is not on the fetch allowlist" in refused["result"]


def test_without_redis_api_is_live_but_not_ready_and_answers_503(
    base_env: Env, tmp_path: Path
) -> None:
    unused = free_port()
    api = start_service(
        base_env.with_(redis_url=f"redis://127.0.0.1:{unused}/0"), "serve", tmp_path
    )
    try:
        assert httpx.get(f"{api.url}/health").status_code == 200
        ready = httpx.get(f"{api.url}/ready")
        assert ready.status_code == 503
        assert "redis unreachable" in ready.json()["problems"][0]
        client = Client(api.url, "acme")
        response = client.submit("compute 1 + 1")
        assert response.status_code == 503
        assert "retry later" in response.json()["error"]
        assert response.headers["Retry-After"] == "5"
        client.http.close()
    finally:
        stop(api.proc)
