"""A task's expected cost on each model, from the token usage observed on that model.

Model selection and a task's budget reservation both need its cost before it runs. It is
estimated from what tasks actually used: running means per model of the input and output
tokens, the LLM calls and the task's own size (`records.ModelUsage`), which the workers
update as tasks complete. Input grows with the task, since every call carries its text:
a task longer than the observed mean adds the difference once per call.

The figures are per tenant. The estimates are shown to the tenant (`selection`), and
means shared between tenants would move with another tenant's work, telling each how
much and how large the others' tasks are.

A model with nothing observed yet borrows the tenant's token figures on the models that
have them (the same conversations, whatever the model's price). Before anything has been
observed for the tenant, a prior stands in: `PRIOR_CALLS` calls, each with the task plus a system prompt's worth of
input and `AGENT_EXPECTED_COMPLETION_TOKENS` of output; deliberately high, so a fresh
deployment reserves too much rather than too little.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from agent_app.cost import call_cost
from agent_app.keys import usage_key
from agent_app.queue import FinalWrite
from agent_app.records import ModelUsage
from agent_app.runtime import text
from agent_app.settings import ModelSpec

# Plan, at least one tool round and an answer: the usual shape of a task.
PRIOR_CALLS = 3
_PRIOR_PROMPT_TOKENS = 200
# Tasks over which the means are plain means; after that, each new task weighs 1/WINDOW.
WINDOW = 200


def estimate_tokens(task: str) -> int:
    """Tokens of a text, roughly: four characters each."""
    return len(task) // 4 + 1


def _pooled(observed: Iterable[ModelUsage]) -> ModelUsage | None:
    seen = [u for u in observed if u.tasks > 0]
    total = sum(u.tasks for u in seen)
    if not total:
        return None

    return ModelUsage(
        tasks=total,
        input_tokens=sum(u.input_tokens * u.tasks for u in seen) / total,
        output_tokens=sum(u.output_tokens * u.tasks for u in seen) / total,
        llm_calls=sum(u.llm_calls * u.tasks for u in seen) / total,
        task_tokens=sum(u.task_tokens * u.tasks for u in seen) / total,
    )


def expected_costs(
    models: list[ModelSpec],
    observed: Mapping[str, ModelUsage],
    task: str,
    prior_completion_tokens: int,
) -> dict[str, float]:
    """Model name -> the task's expected cost in USD on it."""
    size = estimate_tokens(task)
    fallback = _pooled(observed.values())
    costs: dict[str, float] = {}
    for spec in models:
        usage = observed.get(spec.name)
        if usage is None or usage.tasks == 0:
            usage = fallback
        if usage is None:
            input_tokens = float(PRIOR_CALLS * (size + _PRIOR_PROMPT_TOKENS))
            output_tokens = float(PRIOR_CALLS * prior_completion_tokens)
        else:
            input_tokens = max(
                usage.input_tokens + usage.llm_calls * (size - usage.task_tokens),
                usage.llm_calls * size,
            )
            output_tokens = usage.output_tokens
        costs[spec.name] = call_cost(spec, input_tokens, output_tokens)
    return costs


class UsageBook:
    """The observed usage in Redis: updated by workers with a task's final write
    (`observation`), read by the API and workers."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    @staticmethod
    def observation(
        tenant: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        llm_calls: int,
        task: str,
    ) -> FinalWrite:
        """One task of the tenant's that ran in full on `model` (no call answered from the
        cache, which would make it look cheaper than a new task will be), folded into the
        means by the task's final write."""
        figures = ModelUsage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            llm_calls=llm_calls,
            task_tokens=estimate_tokens(task),
        ).model_dump(exclude={"tasks"})
        means = [item for pair in figures.items() for item in pair]
        return FinalWrite(usage_key(tenant, model), {"means": means, "window": WINDOW})

    async def read(self, tenant: str, models: list[ModelSpec]) -> dict[str, ModelUsage]:
        """Model name -> the tenant's observed usage, for the models it has any on."""
        async with self._redis.pipeline(transaction=False) as pipe:
            usage_of = self.read_usage(pipe, tenant, models)
            return usage_of(iter(await pipe.execute()))

    def read_usage(
        self, pipe: Pipeline, tenant: str, models: list[ModelSpec]
    ) -> Callable[[Iterator[Any]], dict[str, ModelUsage]]:
        """Queues the reads of `read` on the caller's pipeline; the function returned takes
        the usage from the replies, in the order queued."""
        for spec in models:
            pipe.hgetall(usage_key(tenant, spec.name))

        def usage_of(replies: Iterator[Any]) -> dict[str, ModelUsage]:
            found = {spec.name: next(replies) for spec in models}
            return {
                name: ModelUsage.decode({text(k): text(v) for k, v in raw.items()})
                for name, raw in found.items()
                if raw
            }

        return usage_of
