"""The API's error answers: one JSON shape for every refusal, whatever its status,
`{"error": "<what is wrong>", "fields": [{"field": "<input>", "message": "..."}]}`
(`fields` empty when no one input is at fault), and the models that describe it in the
OpenAPI document."""

from __future__ import annotations

import email.message
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent_app.logging import get_logger
from agent_app.redisfaults import RedisFaults

log = get_logger(__name__)

_UNDECODABLE_BODY = "There was an error parsing the body"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.extra = extra or {}
        self.headers = headers


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer. `fields` names each input at fault (a body field, a query
    parameter, a header such as `Content-Type` or `Authorization`), empty when none is;
    a task refused as a likely prompt injection also has the heuristics' `reasons` and
    `score`; a task refused for the service's load names the `limit` it met
    (`capacity`, `tenant_share`: see `admission`)."""

    error: str
    fields: list[FieldError]
    reasons: list[str] | None = None
    score: float | None = None
    limit: Literal["capacity", "tenant_share"] | None = None


def error_body(message: str, field: str | None = None) -> dict[str, Any]:
    """The one error shape, for an answer with at most one input at fault."""
    fields = [{"field": field, "message": message}] if field else []
    return {"error": message, "fields": fields}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all with the one error body."""
    return {status: {"model": ErrorBody} for status in statuses}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(RedisError, _redis_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]


def api_error_response(exc: ApiError) -> JSONResponse:
    """The answer for an ApiError, wherever it is raised or remembered."""
    body = error_body(exc.message, exc.field)
    body.update(exc.extra)
    return JSONResponse(body, exc.status, headers=exc.headers)


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return api_error_response(exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    content_type = request.headers.get("content-type")
    if any(e["loc"][:1] == ("body",) for e in errors) and not _is_json(content_type):
        # FastAPI parses a body as JSON only when it is declared so; any other body is
        # refused as "not a valid dictionary", which hides the real mistake.
        got = f"got {content_type!r}" if content_type else "no Content-Type header"
        return JSONResponse(
            error_body(
                f"Content-Type: the body must be JSON sent as 'application/json' ({got})",
                "Content-Type",
            ),
            415,
        )
    fields = [{"field": _field_name(tuple(e["loc"])), "message": e["msg"]} for e in errors]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return JSONResponse({"error": f"invalid request: {summary}", "fields": fields}, 422)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def _redis_error(request: Request, exc: RedisError) -> JSONResponse:
    faults: RedisFaults = request.app.state.runtime.redis_faults
    if faults.failed(exc):
        # Not an outage: retrying cannot help until an operator fixes the configuration,
        # so no Retry-After, and the log has it once, not once per request.
        return JSONResponse(
            error_body(
                "service misconfigured: its task store refused the service's "
                "credentials; this is not transient and needs an operator"
            ),
            503,
        )
    # The client did nothing wrong and may retry; readiness already reports the cause.
    log.warning("redis unavailable", error=type(exc).__name__)
    return JSONResponse(
        error_body("task store temporarily unavailable; retry later"),
        503,
        headers={"Retry-After": "5"},
    )


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400 and exc.detail == _UNDECODABLE_BODY:
        # FastAPI's answer when the JSON decoder gives up on the body as a whole (not
        # UTF-8, nested past the recursion limit, an integer over 4,300 digits), where
        # a syntax error gets a 422 naming `body`: name it here too.
        return JSONResponse(error_body("the body is not JSON this API can decode", "body"), 400)
    return JSONResponse(error_body(str(exc.detail)), exc.status_code, headers=exc.headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "header", "path"):
        parts = parts[1:] or parts
    # A JSON syntax error is located by character offset, which names no field.
    if not parts or isinstance(parts[0], int):
        return "body"
    return ".".join(str(p) for p in parts)
