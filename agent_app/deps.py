"""What the routes depend on, as `Annotated` dependencies: each is built once in
`api.create_app` (or the worker's `health_app`) and kept on the application's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from agent_app.auth import Authenticator, key_from_headers
from agent_app.errors import ApiError
from agent_app.probes import Probes
from agent_app.service import TaskService


# Coroutines, though they only look something up: FastAPI runs a plain function dependency
# in a worker thread, a hand-off per request that the profile showed at a few percent of
# the API's time.
async def _service(request: Request) -> TaskService:
    service: TaskService = request.app.state.service
    return service


async def _probes(request: Request) -> Probes:
    probes: Probes = request.app.state.probes
    return probes


async def _current_tenant(
    request: Request,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> str:
    if x_api_key is not None and authorization is not None:
        # Which one would win is a guess the client should not have to make.
        raise ApiError(
            400,
            "ambiguous credentials: send the API key in X-API-Key or in Authorization, not both",
            "Authorization",
        )
    key = key_from_headers(x_api_key, authorization)
    if key is None:
        raise ApiError(
            401,
            "missing API key: send it in the X-API-Key header or as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    authenticator: Authenticator = request.app.state.authenticator
    found = authenticator.tenant_for(key)
    if found is None:
        raise ApiError(403, "API key not recognised")
    return found


Service = Annotated[TaskService, Depends(_service)]
ProbesDep = Annotated[Probes, Depends(_probes)]
CurrentTenant = Annotated[str, Depends(_current_tenant)]
