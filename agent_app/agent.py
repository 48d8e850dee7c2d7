"""The agent loop: plan, then tool calls, then a final answer, in a bounded number of steps."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.trace import StatusCode
from redis.asyncio import Redis

from agent_app.cache import ResponseCache, ResultCache, cache_key, result_cache_key
from agent_app.cost import BudgetExhaustedError, BudgetLedger, call_cost
from agent_app.keys import history_key
from agent_app.llm import ChatResult, LLMClient, LLMError
from agent_app.logging import get_logger
from agent_app.metrics import Metrics
from agent_app.queue import FinalWrite
from agent_app.records import AnswerStep, CachedAnswer, PlanStep, Status, Step, Tokens, ToolStep
from agent_app.redaction import Redacted, redact, redact_json
from agent_app.runtime import text
from agent_app.settings import Settings
from agent_app.tools import ToolContext, ToolError, ToolRegistry

_SYSTEM_PROMPTS = {
    "control": "You are a careful assistant. Use the tools when they help, then answer.",
    "concise": "You are a terse assistant. Use the tools when they help; answer in one line.",
}
_PLAN_PROMPT = (
    "Write a short plan for the user's task: which tools to use and in what order. "
    "Do not answer yet."
)
_HISTORY_TURNS = 3

log = get_logger(__name__)


@dataclass
class TaskContext:
    task_id: str
    tenant: str
    session_id: str
    task: str
    model: str
    variant: str
    cache_ttl_s: int
    # No session_id: the task is a session of its own, with no other turn before or after.
    own_session: bool = False
    # Credentials redacted from the task when it was submitted (it is stored without them).
    redactions: int = 0
    # Other models that meet the task's quality and budget, cheapest first: taken in turn
    # when the model's circuit opens, instead of failing the task.
    fallbacks: tuple[str, ...] = ()


@dataclass
class AgentResult:
    status: Status
    answer: str | None
    error: str | None = None
    steps: list[Step] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cached_calls: int = 0
    llm_calls: int = 0
    redactions: int = 0
    # Only deterministic tools were called, so the request alone decides the result.
    deterministic: bool = True
    # Made with the task's final write (`queue.FinalWrite`): its turn in the session's
    # history, or its result for the result cache.
    writes: list[FinalWrite] = field(default_factory=list)

    @property
    def tokens(self) -> Tokens:
        return Tokens(
            input=self.input_tokens,
            output=self.output_tokens,
            total=self.input_tokens + self.output_tokens,
            cached_calls=self.cached_calls,
        )


class Agent:
    def __init__(
        self,
        settings: Settings,
        llm: LLMClient,
        cache: ResponseCache,
        results: ResultCache,
        tools: ToolRegistry,
        ledger: BudgetLedger,
        redis: Redis,
        http: httpx.AsyncClient,
        metrics: Metrics,
        tracer: trace.Tracer,
    ) -> None:
        self._settings = settings
        self._llm = llm
        self._cache = cache
        self._results = results
        self._tools = tools
        self._ledger = ledger
        self._redis = redis
        self._http = http
        self._metrics = metrics
        self._tracer = tracer

    async def run(self, ctx: TaskContext) -> AgentResult:
        with self._tracer.start_as_current_span("invoke_agent") as span:
            span.set_attribute("gen_ai.operation.name", "invoke_agent")
            span.set_attribute("gen_ai.agent.name", "agent-app")
            span.set_attribute("gen_ai.request.model", ctx.model)
            span.set_attribute("agent.task.id", ctx.task_id)
            span.set_attribute("agent.tenant", ctx.tenant)
            result = AgentResult(status="completed", answer=None, redactions=ctx.redactions)
            try:
                await self._run(ctx, result)
            except BudgetExhaustedError as exc:
                # Final, not retried: the budget will not come back this period. What the
                # task did until then (steps, tokens) stays on it.
                result.status, result.error = "failed", str(exc)
                self._metrics.budget_actions.labels(**self._metrics.rel(action="stop")).inc()
            if result.status != "completed":
                span.set_status(StatusCode.ERROR, result.error or result.status)
            log.info(
                "agent finished",
                status=result.status,
                steps=len(result.steps),
                tokens=result.tokens.total,
                cached_calls=result.cached_calls,
                redactions=result.redactions,
            )
            return result

    async def _run(self, ctx: TaskContext, result: AgentResult) -> None:
        system = _SYSTEM_PROMPTS.get(ctx.variant, _SYSTEM_PROMPTS["control"])
        history = await self._history(ctx)

        with self._tracer.start_as_current_span("plan"):
            plan = await self._chat(
                ctx,
                result,
                [
                    {"role": "system", "content": _PLAN_PROMPT},
                    {"role": "user", "content": ctx.task},
                ],
                None,
            )
        result.steps.append(PlanStep(content=self._clean(result, plan.content, "plan")))

        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            *history,
            {"role": "user", "content": ctx.task},
        ]
        tool_ctx = ToolContext(self._redis, self._http, self._settings, ctx.tenant, ctx.session_id)
        for _ in range(self._settings.max_steps):
            reply = await self._chat(ctx, result, messages, self._tools.schemas())
            if not reply.tool_calls:
                answer = self._clean(result, reply.content, "answer")
                result.answer = answer
                result.steps.append(AnswerStep(content=answer))
                self._remember(ctx, result)
                return
            messages.append(
                {
                    "role": "assistant",
                    "content": reply.content,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in reply.tool_calls
                    ],
                }
            )
            for call in reply.tool_calls:
                result.deterministic &= self._tools.deterministic(call.name)
                # Tool output is cleaned before the model or the client sees it.
                output = self._clean(
                    result, await self._tool(tool_ctx, ctx.model, call.name, call.arguments), "tool"
                )
                result.steps.append(
                    ToolStep(
                        tool=call.name,
                        # Value by value, so that the arguments stay JSON.
                        arguments=self._count(result, redact_json(call.arguments), "tool"),
                        result=output,
                    )
                )
                messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
        result.status = "failed"
        result.error = f"no final answer within the step limit of {self._settings.max_steps}"

    def _clean(self, result: AgentResult, text: str | None, where: str) -> str:
        return self._count(result, redact(text or ""), where)

    def _count(self, result: AgentResult, cleaned: Redacted, where: str) -> str:
        for kind, n in cleaned.counts.items():
            self._metrics.redactions.labels(**self._metrics.rel(kind=kind, where=where)).inc(n)
        result.redactions += cleaned.total
        return cleaned.text

    async def _tool(self, ctx: ToolContext, model: str, name: str, arguments: str) -> str:
        # The model names the tool: only registered names become a metric label or a span
        # name, or a model inventing names would make a new series of each.
        label = name if name in self._tools.names else "unknown"
        if label == "unknown":
            m = self._metrics
            m.llm_anomalies.labels(**m.rel(model=model, kind="unknown_tool")).inc()
        with self._tracer.start_as_current_span(f"execute_tool {label}") as span:
            span.set_attribute("gen_ai.operation.name", "execute_tool")
            span.set_attribute("gen_ai.tool.name", name)
            outcome = "ok"
            try:
                output = await self._tools.call(ctx, name, arguments)
            except ToolError as exc:
                outcome, output = "error", f"error: {exc}"
            except httpx.HTTPError as exc:
                outcome, output = "error", f"error: {type(exc).__name__} while fetching"
            if outcome == "error":
                span.set_status(StatusCode.ERROR, output)
            self._metrics.tool_calls.labels(**self._metrics.rel(tool=label, outcome=outcome)).inc()
            return output

    async def _chat(
        self,
        ctx: TaskContext,
        result: AgentResult,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
    ) -> ChatResult:
        result.llm_calls += 1
        key = cache_key(ctx.tenant, ctx.model, messages, tools)
        # The spend is checked before every call, not once per task: a task that waited in
        # the queue or for its tenant's slot, or ran alongside others of the tenant, may
        # find the budget spent by now. A cached answer costs nothing and needs no check;
        # both are read in one round trip all the same.
        async with self._redis.pipeline(transaction=False) as pipe:
            cached_of = self._cache.read(pipe, key)
            budget_of = self._ledger.read_status(pipe, ctx.tenant, reservations=False)
            replies = iter(await pipe.execute())
        cached, budget = cached_of(replies), budget_of(replies)
        if cached is not None:
            result.cached_calls += 1
            return cached
        budget.stop_if_exhausted()
        asked = ctx.model
        reply = await self._chat_or_fall_back(ctx, messages, tools)
        if ctx.model != asked:
            # Answered by a fallback model: cached as that model's answer.
            key = cache_key(ctx.tenant, ctx.model, messages, tools)
        result.input_tokens += reply.prompt_tokens
        result.output_tokens += reply.completion_tokens
        usd = call_cost(
            self._settings.model(ctx.model), reply.prompt_tokens, reply.completion_tokens
        )
        self._metrics.cost.labels(**self._metrics.rel(model=ctx.model)).inc(usd)
        await self._ledger.charge(
            ctx.tenant, ctx.task_id, usd, key, self._cache.entry(reply), ctx.cache_ttl_s
        )
        return reply

    async def _chat_or_fall_back(
        self,
        ctx: TaskContext,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
    ) -> ChatResult:
        while True:
            try:
                return await self._llm.chat(ctx.model, messages, tools)
            except LLMError:
                # Only an open circuit is a reason to change model: any other failure
                # would likely fail on the next model too, and is retried as a task.
                if self._llm.circuit_usable(ctx.model):
                    raise
                fallback = next(
                    (m for m in ctx.fallbacks if self._llm.circuit_usable(m)),
                    None,
                )
                if fallback is None:
                    raise
                log.warning("circuit open; falling back", model=ctx.model, fallback=fallback)
                ctx.fallbacks = tuple(m for m in ctx.fallbacks if m != fallback)
                ctx.model = fallback

    async def _history(self, ctx: TaskContext) -> list[dict[str, Any]]:
        if ctx.own_session:
            return []
        raw = await self._redis.lrange(
            history_key(ctx.tenant, ctx.session_id), -2 * _HISTORY_TURNS, -1
        )
        return [json.loads(text(item)) for item in raw]

    def _remember(self, ctx: TaskContext, result: AgentResult) -> None:
        """Adds the turn to a shared session's history (a task's own session has no later
        turn to read it) or, for a task that depends on nothing but its request, stores
        its result for the API to answer the same task with: both with the task's final
        write, so only the attempt whose result counts leaves them."""
        if not ctx.own_session:
            result.writes.append(
                FinalWrite(
                    history_key(ctx.tenant, ctx.session_id),
                    {
                        "list": [
                            json.dumps({"role": "user", "content": ctx.task}),
                            json.dumps({"role": "assistant", "content": result.answer}),
                        ],
                        "keep": 2 * _HISTORY_TURNS,
                        "ttl": self._settings.memory_ttl_s,
                    },
                )
            )
        elif result.deterministic and result.answer is not None:
            result.writes.append(
                self._results.write(
                    result_cache_key(ctx.tenant, ctx.model, ctx.variant, ctx.task),
                    CachedAnswer.saving(
                        result.answer, list(result.steps), result.redactions, result.llm_calls
                    ),
                    ctx.cache_ttl_s,
                )
            )
