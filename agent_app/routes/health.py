"""`/health` and `/ready`, served by the API and the worker alike."""

from __future__ import annotations

from fastapi import APIRouter, Response

from agent_app.deps import ProbesDep
from agent_app.probes import Health, Readiness

router = APIRouter(tags=["probes"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(probes: ProbesDep, response: Response) -> Health:
    body = probes.health()
    if body.status != "ok":
        response.status_code = 503
    return body


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(probes: ProbesDep, response: Response) -> Readiness:
    body = await probes.readiness()
    if body.problems:
        response.status_code = 503
    # The worker's server has no release middleware; the API's sets the same values.
    response.headers.update(probes.runtime.release.headers())
    return body
