"""Secrets at rest: a credential in a task reaches no Redis key, value or append-only file,
and the answer and steps show it redacted (with tool arguments still valid JSON)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from agent_app.cache import ResponseCache
from agent_app.cost import BudgetLedger
from agent_app.llm import ChatResult, ToolCall
from agent_app.loopback import redis_server_command
from agent_app.metrics import Metrics
from agent_app.records import Outcome
from agent_app.redaction import MARK, redact, redact_json
from agent_app.releases import Release
from agent_app.runtime import text
from agent_app.settings import Settings
from agent_app.tools import ToolContext, default_registry
from app.appkit import (
    REDIS_PASSWORD,
    Client,
    DevLLM,
    Env,
    RedisServer,
    Service,
    _pings,
    free_port,
    run_async,
    start_service,
    stop,
    wait_until,
)

pytestmark = pytest.mark.redis

PASSWORD = "Tr0ub4dor&3zz"
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
URL_PASSWORD = "S3cretPw"
DB_URL = f"postgres://app:{URL_PASSWORD}@dbhost:5432/orders"
PIN = "4821"

# Every fragment of a secret that must not be found anywhere: the whole of it, and the
# tail an earlier pattern left behind (`[REDACTED:password]&3zz`).
RAW = [PASSWORD, "Tr0ub4dor", "&3zz", GITHUB_TOKEN, GITHUB_TOKEN[4:], URL_PASSWORD]


@pytest.fixture
def aof_stack(
    base_env: Env, devllm: DevLLM, tmp_path: Path
) -> Iterator[tuple[Client, redis.Redis, Path, list[Service]]]:
    """A redis-server of its own with the append-only file on (every write fsynced), and an
    API and a worker on it."""
    port = free_port()
    workdir = tmp_path / "redis"
    workdir.mkdir()
    proc = subprocess.Popen(
        redis_server_command(port, REDIS_PASSWORD, workdir, appendonly=True),
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=REDIS_PASSWORD, decode_responses=True)
    services: list[Service] = []
    try:
        wait_until(lambda: _pings(client), what="redis-server")
        env = base_env.with_(redis_url=f"redis://127.0.0.1:{port}/0")
        services.append(start_service(env, "serve", tmp_path))
        services.append(start_service(env, "worker", tmp_path))
        api = Client(services[0].url, "acme")
        yield api, client, workdir, services
        api.http.close()
    finally:
        for service in services:
            stop(service.proc)
        client.close()
        stop(proc)


def _everything_stored(client: redis.Redis) -> str:
    """Every key with every value in it, as one text."""
    parts: list[str] = []
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        parts.append(text(key))
        if kind == "string":
            parts.append(text(client.get(key) or ""))
        elif kind == "hash":
            parts.append(json.dumps(client.hgetall(key), ensure_ascii=False))
        elif kind == "list":
            parts.append(json.dumps(client.lrange(key, 0, -1)))
        elif kind == "set":
            parts.append(json.dumps(sorted(client.smembers(key))))
        elif kind == "zset":
            parts.append(json.dumps(client.zrange(key, 0, -1)))
        elif kind == "stream":
            parts.append(json.dumps(client.xrange(key)))
        else:
            pytest.fail(f"key {text(key)} of unexpected type {text(kind)}")
    return "\n".join(parts)


def test_no_secret_reaches_redis_or_its_append_only_file(
    aof_stack: tuple[Client, redis.Redis, Path, list[Service]],
) -> None:
    api, client, workdir, services = aof_stack
    tasks = [
        # Session memory (memory_set) and the session's history.
        ("remember that my password is " + PASSWORD, "s1"),
        (f"remember that my login is password: {PASSWORD}", "s1"),
        (f"remember that my db is {DB_URL}", "s1"),
        (f"remember that my pin is {PIN}", "s1"),
        # No session: the call cache and the result cache.
        (f"echo my token {GITHUB_TOKEN} and compute 2 + 2", None),
        (f"connect to {DB_URL} with password: {PASSWORD}", None),
    ]
    bodies = []
    for task, session in tasks:
        extra = {"session_id": session} if session else {}
        response = api.submit(task, wait=60, **extra)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "completed", body
        assert body["redactions"] >= 1, body
        bodies.append(body)

    for body in bodies:
        shown = json.dumps(body)
        for raw in [*RAW, f"is {PIN}"]:
            assert raw not in shown, (raw, body)
        for step in body["steps"]:
            if step["type"] == "tool":
                json.loads(step["arguments"])  # still JSON after redaction

    # The memory tool kept what it was told, with the credential replaced.
    recalled = api.submit("recall my db", session_id="s1", wait=60).json()
    assert "postgres://[REDACTED:url_credentials]@dbhost:5432/orders" in recalled["result"]

    stored = _everything_stored(client)
    assert "[REDACTED:" in stored  # the scan did see the tasks
    for raw in [*RAW, f"is {PIN}"]:
        assert raw not in stored, raw
    # The append-only file holds every write since the server started, overwritten or not.
    files = [p for p in workdir.rglob("*") if p.is_file()]
    assert any("aof" in p.name for p in files), files
    for path in files:
        content = path.read_bytes()
        for raw in RAW:
            assert raw.encode() not in content, (raw, path.name)
    for service in services:
        log = service.log.read_text()
        for raw in RAW:
            assert raw not in log, (raw, service.log.name)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("password: Tr0ub4dor&3zz", "password: [REDACTED:password]"),
        ("login with pwd=Tr0ub4dor&3zz;then go", "pwd=[REDACTED:password] go"),
        ("passwd=Tr0ub\"4dor'x", "passwd=[REDACTED:password]"),
        ('{"note": "password=x1y2"}', '{"note": "password=[REDACTED:password]"}'),
        (f"token {GITHUB_TOKEN} ok", "token [REDACTED:github_token] ok"),
        ("pat github_pat_11ABCDEFG0123456789_abcdefghijKLMNOPQRST", "[REDACTED:github_token]"),
        (f"use {DB_URL} now", "use postgres://[REDACTED:url_credentials]@dbhost:5432/orders now"),
        ("redis://:hunter2pw@cache:6379/0", "redis://[REDACTED:url_credentials]@cache:6379/0"),
        ("my password is hunter2.", "my password is [REDACTED:password]."),
        ("Please note my PIN is 4821", "my PIN is [REDACTED:password]"),
        ("api_key = 'abc123def456'", "api_key = [REDACTED:api_key]"),
        ("key sk-proj-abcdefghijklmnopqrstuvwxyz12", "key [REDACTED:api_key]"),
    ],
)
def test_the_whole_credential_is_redacted(text: str, shown: str) -> None:
    result = redact(text)
    assert shown in result.text
    assert result.total == 1
    assert redact(result.text).text == result.text  # nothing left to redact


@pytest.mark.parametrize(
    "text",
    [
        "The password is required and must have 12 characters.",
        "Reset the password via https://example.com/reset?user=bob",
        "Open http://localhost:8080/docs@latest in a browser.",
        "Sign in at https://user@example.com (no password in the link).",
        "Use a PIN of four digits; the pin is optional.",
    ],
)
def test_prose_about_credentials_is_left_alone(text: str) -> None:
    assert redact(text).text == text


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            {"key": "db", "value": f"password: {PASSWORD}"},
            {"key": "db", "value": "password: [REDACTED:password]"},
        ),
        (
            {"key": "password", "value": "hunter2"},
            {"key": "password", "value": "[REDACTED:password]"},
        ),
        (
            {"name": "DB_PASSWORD", "value": "x y z"},
            {"name": "DB_PASSWORD", "value": "[REDACTED:password]"},
        ),
        (
            {"api_token": "abc", "max_tokens": "5", "url": DB_URL},
            {
                "api_token": "[REDACTED:secret]",
                "max_tokens": "5",
                "url": "postgres://[REDACTED:url_credentials]@dbhost:5432/orders",
            },
        ),
    ],
)
def test_json_arguments_stay_json(arguments: dict[str, str], expected: dict[str, str]) -> None:
    result = redact_json(json.dumps(arguments))
    assert json.loads(result.text) == expected
    assert result.total >= 1


@settings(max_examples=200)
@given(text=st.text(max_size=60), secret=st.from_regex(r"[!#-&(-\[\]-~]{4,20}", fullmatch=True))
def test_redaction_is_idempotent_and_keeps_no_tail(text: str, secret: str) -> None:
    """A password of printable characters (quotes aside) goes whole (no `&3zz` left), and
    redacting again changes nothing."""
    once = redact(f"{text} password: {secret}")
    assert redact(once.text).text == once.text
    if len(secret) >= 4 and MARK not in text and not any(q in text for q in "\"'"):
        assert f"password: {secret}" not in once.text
        assert once.text.endswith("password: [REDACTED:password]")


def test_stored_records_cache_entries_and_memory_are_redacted(
    redis_server: RedisServer, clean_redis: redis.Redis
) -> None:
    """Whatever writes them: an error message in a task record, a model's reply in the call
    cache, a value the memory tool is given under a credential's name."""

    async def scenario() -> None:
        client = Redis.from_url(redis_server.url, password=REDIS_PASSWORD)
        settings = Settings()
        try:
            outcome = Outcome(status="failed", error=f"cannot reach {DB_URL}")
            await client.hset("t", items=outcome.hset_args())
            reply = ChatResult(
                model="small",
                content=f"your token is {GITHUB_TOKEN}",
                tool_calls=[
                    ToolCall("c1", "memory_set", json.dumps({"key": "password", "value": PASSWORD}))
                ],
            )
            cache = ResponseCache(Metrics(Release("t", "stable")))
            ledger = BudgetLedger(client, settings)
            # As a worker caches a reply: with the call's cost, in one step.
            await ledger.charge("acme", "t", 0.001, "c", cache.entry(reply), 60)
            async with client.pipeline(transaction=False) as pipe:
                cached_of = cache.read(pipe, "c")
                cached = cached_of(iter(await pipe.execute()))
            assert cached is not None
            assert cached.content == "your token is [REDACTED:github_token]"
            assert json.loads(cached.tool_calls[0].arguments)["value"] == "[REDACTED:password]"
            async with httpx.AsyncClient() as http:
                ctx = ToolContext(client, http, settings, "acme", "s")
                tools = default_registry()
                args = json.dumps({"key": "api_token", "value": "tok-123"})
                assert await tools.call(ctx, "memory_set", args) == "remembered api_token"
                recalled = await tools.call(ctx, "memory_get", json.dumps({"key": "api_token"}))
                assert recalled == "api_token is [REDACTED:secret]"
        finally:
            await client.aclose()

    run_async(scenario())
    stored = _everything_stored(clean_redis)
    for raw in [*RAW, "tok-123"]:
        assert raw not in stored, raw
