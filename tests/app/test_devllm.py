"""devllm's chat completions, in process: the answers the app's tests and the load
benchmark rely on, and the error bodies of requests it cannot answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from agent_app.devllm import create_app
from agent_app.tools import default_registry

TASK = [{"role": "user", "content": "compute 2 + 3 and remember my colour is blue"}]


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def _chat(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_same_request_gets_the_same_answer(client: TestClient) -> None:
    tools = default_registry().schemas()
    first = _chat(client, model="medium", messages=TASK, tools=tools)
    second = _chat(client, model="medium", messages=TASK, tools=tools)
    assert {**first, "created": 0} == {**second, "created": 0}
    assert first["id"].startswith("chatcmpl-")
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    calls = [c["function"]["name"] for c in first["choices"][0]["message"]["tool_calls"]]
    assert calls == ["calculator", "memory_set"]
    assert first["usage"]["total_tokens"] == (
        first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
    )


def test_tool_results_are_answered(client: TestClient) -> None:
    messages = [*TASK, {"role": "tool", "tool_call_id": "a", "content": "5"}]
    answer = _chat(client, model="medium", messages=messages, tools=default_registry().schemas())
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": f"Answer: 5 (task: {TASK[0]['content']})",
    }
    assert answer["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "the body must be a JSON object"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b"", "the body must be a JSON object"),
        (b'{"model": "medium"}', "model and messages are required"),
        (b'{"model": "", "messages": []}', "model and messages are required"),
        (b'{"model": "medium", "messages": "hi"}', "model and messages are required"),
    ],
)
def test_unreadable_requests_get_an_openai_style_400(
    client: TestClient, content: bytes, message: str
) -> None:
    response = client.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": {"message": message, "type": "invalid"}}
    assert client.get("/admin/stats").json()["requests"] == {}


def test_injected_errors_and_statistics(client: TestClient) -> None:
    client.post("/admin/faults", json={"model": "small", "fail_next": 1, "status": 503})
    failed = client.post("/v1/chat/completions", json={"model": "small", "messages": TASK})
    assert failed.status_code == 503
    assert failed.json() == {
        "error": {"message": "injected error 503", "type": "injected", "code": 503}
    }
    _chat(client, model="small", messages=TASK)
    assert client.get("/admin/stats").json() == {
        "requests": {"small": 2},
        "max_inflight": {"small": 1},
    }
    assert client.get("/v1/chat/completions").status_code == 405
