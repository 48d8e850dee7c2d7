"""Input validation: the task request schema, and the prompt-injection verdict a task is
screened to (by `injection.detector`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")


class TaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    task: str = Field(min_length=1, description="What the agent should do.")
    session_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Groups tasks that share memory; tasks without one get their own.",
    )
    # Strict: JSON `true` is not a quality of 1.0, nor "0.9" one of 0.9; NaN is refused as
    # not a number rather than as out of range.
    quality: float | None = Field(
        default=None,
        ge=0,
        le=1,
        strict=True,
        allow_inf_nan=False,
        description="Minimum expected model quality, a number from 0 to 1.",
    )


class InjectionVerdict(BaseModel):
    action: Literal["allow", "flag", "reject"]
    score: float
    reasons: list[str] = []
