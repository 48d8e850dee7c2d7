"""Typed records stored as Redis hashes, with the one encoding they share, and the task as
the API shows it.

A hash holds strings: a text field is stored as it is, any other value as JSON (numbers,
booleans, objects, lists), and a missing value (None) is not stored at all. Lua scripts
write some fields themselves (`attempts` by HINCRBY, `cost_usd` by HINCRBYFLOAT,
`status`, `worker` and `started_at` on start; see `scripts`), in the same encoding."""

from __future__ import annotations

import json
import types
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, Field

from agent_app.redaction import redact_value
from agent_app.selection import Selection
from agent_app.validation import InjectionVerdict, TaskRequest

Status = Literal["queued", "running", "retrying", "completed", "failed", "dead_lettered"]
FinalStatus = Literal["completed", "failed", "dead_lettered"]
FINAL_STATUSES: frozenset[str] = frozenset(get_args(FinalStatus))

_SCALARS = (str, int, float, bool)


def _stored_as_text(annotation: Any) -> bool:
    """Scalars (and None) are decoded by pydantic from their text; the rest is JSON."""
    origin = get_origin(annotation)
    if origin is Literal:
        return True
    if origin in (Union, types.UnionType):
        return all(_stored_as_text(arg) for arg in get_args(annotation) if arg is not type(None))
    return annotation in _SCALARS


class HashModel(BaseModel):
    """A model stored as a Redis hash, in the encoding the module docstring describes."""

    _json_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._json_fields = frozenset(
            name for name, info in cls.model_fields.items() if not _stored_as_text(info.annotation)
        )

    def encode(self) -> dict[str, str]:
        """The hash fields, for HSET's mapping: with every credential redacted, whoever
        wrote the value (an error message, a step, the request)."""
        fields = redact_value(self.model_dump(mode="json", exclude_none=True), Counter())
        return {
            name: value if isinstance(value, str) else json.dumps(value)
            for name, value in fields.items()
        }

    def hset_args(self) -> list[str]:
        """The hash fields as a script's HSET arguments: field, value, field, value…"""
        return [item for pair in self.encode().items() for item in pair]

    @classmethod
    def decode(cls, raw: Mapping[str, str]) -> Self:
        """From HGETALL's mapping; fields of other models in the same hash are ignored."""
        return cls.model_validate(
            {
                name: json.loads(value) if name in cls._json_fields else value
                for name, value in raw.items()
            }
        )

    @classmethod
    def decode_pairs(cls, flat: Sequence[str]) -> Self:
        """From HGETALL's reply inside a script: field, value, field, value…"""
        return cls.decode(dict(zip(flat[::2], flat[1::2], strict=True)))


class PlanStep(BaseModel):
    type: Literal["plan"] = "plan"
    content: str


class ToolStep(BaseModel):
    type: Literal["tool"] = "tool"
    tool: str
    arguments: str
    result: str


class AnswerStep(BaseModel):
    type: Literal["answer"] = "answer"
    content: str


Step = Annotated[PlanStep | ToolStep | AnswerStep, Field(discriminator="type")]


class Tokens(BaseModel):
    input: int
    output: int
    total: int
    # LLM calls answered from the response cache (or, for a cached result, saved).
    cached_calls: int


class Outcome(HashModel):
    """What a worker writes to a task record: progress while it runs, its outcome when
    final (`finished_at` set then, see `TaskQueue.finish`). A queued task that starts with
    its tenant near the budget is moved to a cheaper model (`model`, `selection`)."""

    status: Status
    # The model the task runs on when it is no longer the one selected at submission: a
    # cheaper one (the tenant near its budget) or a fallback (the selected one's circuit
    # open).
    model: str | None = None
    selection: Selection | None = None
    budget_limited: bool | None = None
    worker: str | None = None
    result: str | None = None
    error: str | None = None
    steps: list[Step] | None = None
    tokens: Tokens | None = None
    redactions: int | None = None
    finished_at: float | None = None


class CachedAnswer(HashModel):
    """A stored task result (`cache.ResultCache`): the fields a task answered from it has
    in its record, the answer with no tokens spent and the LLM calls it saved counted."""

    result: str
    steps: list[Step]
    redactions: int
    tokens: Tokens
    cached: bool = True

    @classmethod
    def saving(cls, answer: str, steps: list[Step], redactions: int, llm_calls: int) -> Self:
        tokens = Tokens(input=0, output=0, total=0, cached_calls=llm_calls)
        return cls(result=answer, steps=steps, redactions=redactions, tokens=tokens)


class ModelUsage(HashModel):
    """Usage observed per task of one tenant on one model (`usage.UsageBook`): running
    means over the tasks that ran in full there (`tasks` of them), stored at
    `keys.usage_key(tenant, model)`."""

    tasks: int = 0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    llm_calls: float = 0.0
    # The task text's own size (`usage.estimate_tokens`), to scale the input to a new task.
    task_tokens: float = 0.0


class TaskRecord(HashModel):
    """A task as stored at `keys.task_key(id)`: written by the API, advanced by workers."""

    id: str
    tenant: str
    status: Status
    request: TaskRequest
    session_id: str | None = None
    model: str
    selection: Selection
    injection: InjectionVerdict
    variant: str
    budget_limited: bool = False
    created_at: float
    attempts: int = 0
    cost_usd: float = 0.0
    worker: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: str | None = None
    error: str | None = None
    steps: list[Step] | None = None
    tokens: Tokens | None = None
    redactions: int | None = None
    cached: bool | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


class TaskView(BaseModel):
    """A task as the API returns it: the record without what is the operator's business
    (tenant, worker, the request as sent, budget state)."""

    id: str
    status: Status
    result: str | None = None
    error: str | None = None
    steps: list[Step] | None = None
    tokens: Tokens | None = None
    cost_usd: float
    model: str
    selection: Selection = Field(description="The reasoned model choice.")
    injection: InjectionVerdict
    attempts: int
    variant: str
    session_id: str | None = None
    redactions: int | None = None
    created_at: float
    finished_at: float | None = None
    cached: bool | None = Field(default=None, description="Answered from the result cache.")

    @classmethod
    def of(cls, record: TaskRecord) -> TaskView:
        return cls.model_validate(record, from_attributes=True)
