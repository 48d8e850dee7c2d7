"""`/metrics` (a process's own series) and `/metrics/queue` (the task stream's backlog,
the API's alone). The API serves both on its private metrics port, never on the port its
Service exposes: the series name tenants and their budget ratios."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from agent_app.deps import ProbesDep
from agent_app.logging import get_logger

log = get_logger(__name__)

router = APIRouter(tags=["metrics"])
queue_router = APIRouter(tags=["metrics"])


class MetricsResponse(Response):
    media_type = CONTENT_TYPE_LATEST


@router.get(
    "/metrics",
    response_class=MetricsResponse,
    responses={200: {"description": "Prometheus text exposition"}},
)
async def metrics(probes: ProbesDep) -> MetricsResponse:
    return MetricsResponse(probes.metrics())


@queue_router.get(
    "/metrics/queue",
    response_class=MetricsResponse,
    responses={
        200: {"description": "Prometheus text exposition of the task stream's backlog"},
        503: {"description": "Redis unreachable: no figure rather than a wrong one"},
    },
)
async def queue_metrics(probes: ProbesDep) -> Response:
    try:
        return MetricsResponse(await probes.queue_metrics())
    except RedisError as exc:
        log.warning("queue backlog unavailable", error=type(exc).__name__)
        return Response("redis unreachable\n", 503, media_type="text/plain")
