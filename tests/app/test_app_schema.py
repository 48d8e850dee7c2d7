"""Bad requests to the live API: schema-driven fuzzing of every operation, then malformed
requests the schema cannot describe (broken JSON, wrong content types, oversize and deeply
nested bodies, invalid UTF-8, bad headers and API keys).

None may get a 5xx or bring the API down, and every 4xx under /v1/ carries the app's error
body; a validation error (413, 422) names the field at fault. Every answer to a generated
request is one the OpenAPI document describes: its status code, content type, headers and
body schema.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from faults.campaign import record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from app.appkit import TENANT_KEYS, Service

pytestmark = pytest.mark.redis

KEY = TENANT_KEYS["acme"]
SCHEMA_EXAMPLES = 50  # per operation and generation mode
MALFORMED_EXAMPLES = 300
# The app's default AGENT_MAX_BODY_BYTES. Oversize bodies stay under twice that: the API
# answers 413 without reading the rest, and a body bigger than the socket buffers could
# have the client's write reset before it reads that answer.
MAX_BODY = 64 * 1024
HTTP_PARSER_REFUSAL = "Invalid HTTP request received."
# What the OpenAPI document says of each response, checked against every generated request's.
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Tally:
    """What each request got, and each way a request was lost."""

    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    unsendable: int = 0
    refused_by_http_parser: int = 0
    no_negative_cases: list[str] = field(default_factory=list)

    def judge(self, label: str, path: str, response: httpx.Response) -> None:
        self.cases[label] += 1
        self.statuses[response.status_code] += 1
        if response.status_code == 400 and response.text == HTTP_PARSER_REFUSAL:
            # Not HTTP at all (say, a control character in a header value): uvicorn's
            # parser answers before the app exists for the request, as it should.
            self.refused_by_http_parser += 1
            return
        problem = _problem(path, response)
        if problem is not None:
            self.lost[problem] += 1
            if len(self.examples) < 10:
                self.examples.append(
                    f"{problem}: {label} -> {response.status_code} {response.text}"
                )

    def undocumented(self, label: str, response: Any, failure: BaseException) -> None:
        self.lost["undocumented responses"] += 1
        if len(self.examples) < 10:
            self.examples.append(
                f"undocumented response: {label} -> {response.status_code} {response.text[:200]}"
                f": {failure}"
            )

    def dropped(self, label: str, error: Exception) -> None:
        self.cases[label] += 1
        self.lost["crashes"] += 1
        if len(self.examples) < 10:
            self.examples.append(f"crashes: {label} -> {error!r}")


def _problem(path: str, response: httpx.Response) -> str | None:
    if response.status_code >= 500:
        return "5xx"
    if not (400 <= response.status_code < 500 and path.startswith("/v1/")):
        return None
    try:
        body = response.json()
    except ValueError:
        return "unclear errors"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        return "unclear errors"
    if not isinstance(body.get("fields"), list):
        return "unclear errors"  # the one error shape has `fields`, empty or not
    named = [f.get("field") for f in body["fields"] if isinstance(f, dict)]
    if response.status_code == 400 and not named:
        return "unclear errors"
    if response.status_code in (413, 415, 422) and (
        not named or not all(isinstance(n, str) and n and n in body["error"] for n in named)
    ):
        return "unclear errors"
    return None


def test_bad_requests_get_clear_4xx_and_the_api_stays_up(api: Service) -> None:
    started = time.monotonic()
    tally = Tally()
    operations = _fuzz_schema(api, tally)
    with httpx.Client(base_url=api.url, timeout=30) as client:
        _send_malformed(client, tally)
        alive = api.proc.poll() is None
        try:
            health = client.get("/health")
            healthy = alive and health.status_code == 200 and health.json() == {"status": "ok"}
        except httpx.TransportError:
            healthy = False
    if not healthy:
        tally.lost["crashes"] += 1
    schema_cases = sum(n for label, n in tally.cases.items() if label.startswith("schema "))
    record(
        "bad-requests",
        tried={
            "cases": sum(tally.cases.values()),
            "operations": len(operations),
            "schema cases": schema_cases,
            "malformed requests": sum(tally.cases.values()) - schema_cases,
        },
        lost={
            key: tally.lost[key]
            for key in ("5xx", "crashes", "unclear errors", "undocumented responses")
        },
        figures={
            "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
            "cases per kind": dict(sorted(tally.cases.items())),
            "generated but not sendable by the client": tally.unsendable,
            "refused by the HTTP parser (not HTTP)": tally.refused_by_http_parser,
            "operations with no schema-invalid input": tally.no_negative_cases,
        },
        seconds=time.monotonic() - started,
    )
    assert healthy, f"API process alive: {alive}; /health did not answer ok"
    assert not tally.lost, "\n".join(tally.examples)
    assert {"POST /v1/tasks", "GET /v1/tasks/{task_id}", "GET /health"} <= set(operations)


def _fuzz_schema(api: Service, tally: Tally) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    names = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        name = f"{operation.method.upper()} {operation.path}"
        names.append(name)
        modes = [GenerationMode.POSITIVE]
        if operation.path.startswith("/v1/"):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            _fuzz_operation(operation, mode, f"schema {mode.value} {name}", tally)
    return names


def _fuzz_operation(operation: Any, mode: GenerationMode, label: str, tally: Tally) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(SETTINGS, max_examples=SCHEMA_EXAMPLES)
    def check(case: Any) -> None:
        if case.query:
            # Waiting for results that no worker produces would only slow the run.
            case.query.pop("wait", None)
        try:
            response = case.call(headers={"X-API-Key": KEY}, timeout=30)
        except (ValueError, UnicodeError):
            # A header or URL the HTTP client refuses to send never reaches the app.
            tally.unsendable += 1
            return
        except OSError as error:
            tally.dropped(label, error)
            return
        tally.judge(label, case.formatted_path, _as_httpx(response))
        try:
            case.validate_response(response, checks=CONFORMANCE)
        except (FailureGroup, AssertionError) as failure:
            tally.undocumented(label, response, failure)

    try:
        check()
    except Unsatisfiable:
        # Nothing in the operation can be made schema-invalid (only free-form strings).
        if mode is GenerationMode.POSITIVE:
            raise
        tally.no_negative_cases.append(label)


def _as_httpx(response: Any) -> httpx.Response:
    """schemathesis answers with its own response type; judge every answer alike."""
    return httpx.Response(response.status_code, content=response.content)


@dataclass(frozen=True)
class Malformed:
    kind: str
    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    content: bytes | None = None
    chunked: bool = False


def _auth() -> list[tuple[bytes, bytes]]:
    return [(b"X-API-Key", KEY.encode())]


def _post(kind: str, content: bytes, content_type: bytes = b"application/json") -> Malformed:
    headers = [*_auth(), (b"Content-Type", content_type)] if content_type else _auth()
    return Malformed(kind, "POST", "/v1/tasks", headers, content)


def _nested(depth: int, opener: str) -> bytes:
    inner = "[" * depth + "]" * depth if opener == "[" else '{"a":' * depth + "1" + "}" * depth
    return f'{{"task": "nested", "quality": {inner}}}'.encode()


non_json = (
    st.binary(max_size=300)
    .filter(lambda b: not _is_json(b))
    .map(lambda b: _post("non-JSON body", b))
)
invalid_utf8 = (
    st.binary(min_size=1, max_size=40)
    .filter(lambda b: not _is_utf8(b))
    .map(lambda b: _post("invalid UTF-8", b'{"task": "' + b + b'"}'))
)
wrong_content_type = st.tuples(
    st.sampled_from(
        [
            b"text/plain",
            b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=x",
            b"multipart/form-data",
            b"application/xml",
            b"application/json; charset=utf-16",
            b"application/json; charset=latin-1",
            b"application/vnd.api+json",
            b"application/",
            b"garbage",
            b"",
        ]
    ),
    st.sampled_from([b'{"task": "hello"}', b"task=hello", b"--x\r\n\r\nhello\r\n--x--", b"<a/>"]),
).map(lambda pair: _post("wrong content type", pair[1], pair[0]))
nested = st.tuples(st.integers(min_value=1, max_value=30_000), st.sampled_from("[{")).map(
    lambda pair: _post("deeply nested body", _nested(*pair))
)
sized = st.integers(min_value=MAX_BODY - 1024, max_value=MAX_BODY * 2).map(
    lambda size: _post("large body", json.dumps({"task": "a" * size}).encode())
)
chunked = st.integers(min_value=MAX_BODY // 2, max_value=MAX_BODY * 2).map(
    lambda size: Malformed(
        "chunked body",
        "POST",
        "/v1/tasks",
        [*_auth(), (b"Content-Type", b"application/json")],
        json.dumps({"task": "b" * size}).encode(),
        chunked=True,
    )
)
odd_numbers = st.sampled_from(
    [b"1e999", b"-1e999", b"NaN", b"Infinity", b"1" * 5000, b"0." + b"0" * 5000 + b"1", b"-0"]
).map(lambda n: _post("odd number", b'{"task": "numbers", "quality": ' + n + b"}"))
header_value = st.binary(max_size=200) | st.sampled_from(
    [b"", b" ", b"wrong", KEY.encode() + b" ", b"\xff\xfe", b"x" * 8000, b"Bearer " + KEY.encode()]
)
bad_key = st.tuples(
    st.sampled_from([b"X-API-Key", b"Authorization"]),
    header_value,
    st.sampled_from([b"", b"Bearer ", b"Basic ", b"bearer"]),
).map(
    lambda t: Malformed(
        "bad API key",
        "POST",
        "/v1/tasks",
        [(t[0], (t[2] if t[0] == b"Authorization" else b"") + t[1])],
        b'{"task": "who am I"}',
    )
)
bad_idempotency_key = header_value.map(
    lambda value: Malformed(
        "bad Idempotency-Key",
        "POST",
        "/v1/tasks",
        [*_auth(), (b"Idempotency-Key", value), (b"Content-Type", b"application/json")],
        b'{"task": "once"}',
    )
)
bad_path = st.text(max_size=120).map(
    lambda text: Malformed("bad task id", "GET", "/v1/tasks/" + quote(text, safe=""), _auth())
)
bad_wait = st.text(max_size=12).map(
    lambda text: Malformed(
        "bad wait",
        "POST",
        "/v1/tasks?wait=" + quote(text, safe=""),
        [*_auth(), (b"Content-Type", b"application/json")],
        b'{"task": "wait"}',
    )
)
wrong_method = st.tuples(
    st.sampled_from(["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]),
    st.sampled_from(["/v1/tasks", "/v1/tasks/abc", "/v1/nothing-here"]),
).map(lambda pair: Malformed("wrong method or path", pair[0], pair[1], _auth(), b"{}"))

MALFORMED = st.one_of(
    non_json,
    invalid_utf8,
    wrong_content_type,
    nested,
    sized,
    chunked,
    odd_numbers,
    bad_key,
    bad_idempotency_key,
    bad_path,
    bad_wait,
    wrong_method,
)


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 8192):
        yield data[start : start + 8192]


def _send_malformed(client: httpx.Client, tally: Tally) -> None:
    @given(request=MALFORMED)
    @settings(SETTINGS, max_examples=MALFORMED_EXAMPLES)
    def send(request: Malformed) -> None:
        content: Any = _chunks(request.content or b"") if request.chunked else request.content
        try:
            built = client.build_request(
                request.method, request.path, headers=request.headers, content=content
            )
        except (ValueError, UnicodeError, httpx.InvalidURL):
            tally.unsendable += 1
            return
        try:
            response = client.send(built)
        except httpx.LocalProtocolError:
            tally.unsendable += 1
            return
        except httpx.TransportError as error:
            tally.dropped(request.kind, error)
            return
        tally.judge(request.kind, request.path, response)

    send()


def test_undecodable_body_error_names_the_body(api: Service) -> None:
    response = httpx.post(
        f"{api.url}/v1/tasks",
        content=b'{"task": "\xff"}',
        headers={"X-API-Key": KEY, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code in (400, 422)
    assert "body" in json.dumps(response.json()["fields"])
