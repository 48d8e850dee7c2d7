"""`/v1/tasks`: submit a task, read it back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from agent_app.deps import CurrentTenant, Service
from agent_app.errors import error_responses
from agent_app.records import TaskView
from agent_app.validation import TaskRequest

router = APIRouter(
    prefix="/v1/tasks", tags=["tasks"], responses=error_responses(400, 401, 403, 503)
)


@router.post(
    "",
    status_code=202,
    response_model=TaskView,
    responses={
        200: {
            "model": TaskView,
            "description": "Final already (answered from the result cache, or waited for), "
            "or replayed for its Idempotency-Key",
        },
        **error_responses(408, 409, 413, 415, 422, 429),
    },
)
async def submit(
    body: TaskRequest,
    tenant: CurrentTenant,
    service: Service,
    response: Response,
    wait: Annotated[
        float | None, Query(ge=0, description="Seconds to wait for the result.")
    ] = None,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> TaskView:
    submitted = await service.submit(tenant, body, wait, idempotency_key)
    response.status_code = submitted.status_code
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        response.headers["Location"] = f"/v1/tasks/{submitted.record.id}"
    return TaskView.of(submitted.record)


@router.get("/{task_id}", response_model=TaskView, responses=error_responses(404, 422))
async def get_task(task_id: str, tenant: CurrentTenant, service: Service) -> TaskView:
    return TaskView.of(await service.get(tenant, task_id))
