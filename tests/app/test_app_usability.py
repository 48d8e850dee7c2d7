"""Small things users trip on: a completed task keeps no earlier attempt's error, an open
circuit falls back to a healthy model, strict request types, a clear answer for a body
sent with the wrong Content-Type, ambiguous credentials refused, slow requests cut off,
and one error shape for every status."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from app.appkit import (
    TENANT_KEYS,
    Client,
    DevLLM,
    Env,
    Service,
    fields_named,
    start_service,
    stop,
)

KEY = TENANT_KEYS["acme"]

# These tests start or use a real redis-server.
pytestmark = pytest.mark.redis


def test_a_completed_task_keeps_no_error_from_an_earlier_attempt(
    acme: Client, worker: Service, devllm: DevLLM
) -> None:
    # Both tries of the first call fail (AGENT_LLM_RETRY_ATTEMPTS=2): attempt 1 fails, and
    # the entry is reclaimed and completed by attempt 2.
    devllm.fault(model="*", fail_next=2, status=503)
    task_id = acme.submit("compute 6 * 7").json()["id"]
    body = acme.wait_final(task_id)
    assert body["status"] == "completed"
    assert body["attempts"] == 2
    assert "42" in body["result"]
    assert body["error"] is None


def test_an_open_circuit_falls_back_to_a_healthy_model_that_meets_the_quality(
    acme: Client,
    worker_factory: Callable[..., Service],
    devllm: DevLLM,
    clean_redis: redis.Redis,
) -> None:
    worker_factory(breaker_failure_threshold=2, breaker_reset_s=60)
    devllm.fault(model="medium", fail_next=1000, status=503)
    try:
        # Quality 0.7: medium (0.8) is the cheapest that meets it; large (0.95) does too.
        submitted = acme.submit("compute 5 + 5", quality=0.7).json()
        assert submitted["model"] == "medium"
        body = acme.wait_final(submitted["id"])
        assert body["status"] == "completed", body
        assert body["model"] == "large"
        assert body["attempts"] == 1
        assert devllm.requests().get("large", 0) >= 1
        # The next task starts on the fallback at once: the circuit is still open.
        before = devllm.requests().get("medium", 0)
        second = acme.wait_final(acme.submit("compute 6 + 6", quality=0.7).json()["id"])
        assert (second["status"], second["model"]) == ("completed", "large")
        assert devllm.requests().get("medium", 0) == before
    finally:
        # The dev LLM outlives the test: later tests must not meet this fault.
        httpx.delete(f"{devllm.url}/admin/faults", timeout=5).raise_for_status()


@pytest.mark.parametrize(
    ("raw_quality", "message"),
    [
        ("true", "valid number"),
        ('"0.9"', "valid number"),
        ("NaN", "finite number"),
        ("Infinity", "finite number"),
    ],
)
def test_quality_must_be_a_finite_number(acme: Client, raw_quality: str, message: str) -> None:
    response = acme.http.post(
        "/v1/tasks",
        content=f'{{"task": "compute 1 + 1", "quality": {raw_quality}}}'.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert fields_named(body) == ["quality"]
    assert message in body["error"]
    assert "less than or equal" not in body["error"]


def test_a_json_body_sent_as_text_plain_is_told_about_its_content_type(acme: Client) -> None:
    response = acme.http.post(
        "/v1/tasks",
        content=b'{"task": "compute 1 + 1"}',
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 415, response.text
    body = response.json()
    assert fields_named(body) == ["Content-Type"]
    assert "application/json" in body["error"]
    assert "text/plain" in body["error"]


def test_both_credential_headers_are_refused_as_ambiguous(api: Service) -> None:
    for bearer in (KEY, TENANT_KEYS["globex"], "unknown"):
        response = httpx.post(
            f"{api.url}/v1/tasks",
            json={"task": "compute 1 + 1"},
            headers={"X-API-Key": KEY, "Authorization": f"Bearer {bearer}"},
            timeout=30,
        )
        assert response.status_code == 400, response.text
        body = response.json()
        assert "ambiguous" in body["error"]
        assert fields_named(body) == ["Authorization"]


def test_every_error_has_the_one_documented_shape(api: Service, acme: Client) -> None:
    answers = {
        401: httpx.get(f"{api.url}/v1/tasks/x", timeout=30),
        403: httpx.get(f"{api.url}/v1/tasks/x", headers={"X-API-Key": "nope"}, timeout=30),
        404: acme.http.get("/v1/tasks/unknown"),
        405: acme.http.delete("/v1/tasks/unknown"),
        422: acme.http.post("/v1/tasks", json={"task": ""}),
    }
    for status, response in answers.items():
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error", "fields"}, (status, body)
        assert isinstance(body["error"], str)
        assert body["error"]
        assert all(set(f) == {"field", "message"} for f in body["fields"])
    schema = httpx.get(f"{api.url}/openapi.json", timeout=30).json()
    error_body = schema["components"]["schemas"]["ErrorBody"]
    assert set(error_body["required"]) == {"error", "fields"}
    assert "field" not in error_body["properties"]


@pytest.fixture
def impatient_api(base_env: Env, tmp_path: Path) -> Iterator[Service]:
    service = start_service(
        base_env.with_(header_read_timeout_s=1, body_read_timeout_s=1), "serve", tmp_path
    )
    yield service
    stop(service.proc)


def _exchange(url: str, request: bytes) -> bytes:
    """Sends `request` and reads until the server closes; the socket's own timeout is
    only the bound after which the test fails (it was a hang before)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        return received


def test_a_body_shorter_than_its_content_length_is_cut_off(impatient_api: Service) -> None:
    answer = _exchange(
        impatient_api.url,
        b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-API-Key: " + KEY.encode() + b'\r\nContent-Length: 100\r\n\r\n{"task": ',
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert b"Content-Length" in body
    assert b'"field":"body"' in body.replace(b" ", b"")


def test_request_headers_that_never_end_are_cut_off(impatient_api: Service) -> None:
    answer = _exchange(impatient_api.url, b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nX-API-")
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"request headers not received" in answer
    # A connection that sends nothing at all is closed the same way.
    assert _exchange(impatient_api.url, b"").startswith(b"HTTP/1.1 408")
