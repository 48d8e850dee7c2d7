"""LLM client: the openai SDK against any OpenAI-compatible base_url, with our own
retries (stamina), a circuit breaker per model, timeouts and a concurrency limit."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
import stamina
from openai.types.chat import ChatCompletion
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from agent_app.breaker import CircuitBreaker, State
from agent_app.logging import get_logger
from agent_app.metrics import BREAKER_STATE_VALUES, Metrics
from agent_app.settings import Settings

# Errors that say the model endpoint is unwell (as opposed to a bad request of ours).
_TRANSIENT = (
    openai.APIConnectionError,  # includes APITimeoutError
    openai.RateLimitError,
    openai.InternalServerError,
)


log = get_logger(__name__)


class LLMError(Exception):
    """The LLM call failed after retries; the task may be retried later."""


class MalformedResponseError(LLMError):
    """The endpoint answered, but with nothing the agent can use (no choices, an empty
    message). Retried like a transient error: a proxy's one bad answer should not cost
    the task an attempt; one that keeps coming counts against the model's circuit."""


class CircuitOpenError(LLMError):
    def __init__(self, model: str, retry_in_s: float, last_failure: str = "") -> None:
        cause = f" (last failure: {last_failure})" if last_failure else ""
        super().__init__(
            f"circuit for model {model!r} is open{cause}; next probe in {retry_in_s:.1f}s"
        )


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class ChatResult:
    model: str
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "model": self.model,
                "content": self.content,
                "tool_calls": [tc.__dict__ for tc in self.tool_calls],
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            }
        )

    @classmethod
    def from_json(cls, raw: str) -> ChatResult:
        data = json.loads(raw)
        return cls(
            model=data["model"],
            content=data["content"],
            tool_calls=[ToolCall(**tc) for tc in data["tool_calls"]],
            prompt_tokens=data["prompt_tokens"],
            completion_tokens=data["completion_tokens"],
        )


BreakerListener = Callable[[str, State], Coroutine[Any, Any, None]]

_RETRIED = (*_TRANSIENT, MalformedResponseError)

# What a model's answer may hold, whatever it sends: tool names as long as OpenAI allows
# function names, and as many tool calls in one message as any task here needs.
MAX_TOOL_NAME_CHARS = 64
MAX_TOOL_CALLS = 16


class LLMClient:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        tracer: trace.Tracer,
        on_breaker_change: BreakerListener | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._tracer = tracer
        self._on_breaker_change = on_breaker_change
        self._client = openai.AsyncOpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value(),
            timeout=settings.llm_timeout_s,
            max_retries=0,  # retries are ours, so the breaker sees every attempt
            # The SDK's aiohttp transport: a quarter less CPU per call than its default
            # httpx one, measured on this path, and LLM calls are most of a worker's work.
            http_client=openai.DefaultAioHttpClient(
                limits=httpx2.Limits(
                    max_connections=openai.DEFAULT_CONNECTION_LIMITS.max_connections,
                    max_keepalive_connections=(
                        openai.DEFAULT_CONNECTION_LIMITS.max_keepalive_connections
                    ),
                    keepalive_expiry=settings.llm_keepalive_s,
                )
            ),
        )
        self._semaphore = asyncio.Semaphore(settings.llm_max_concurrency)
        self.breakers: dict[str, CircuitBreaker] = {}
        self._pending_notifications: set[asyncio.Task[None]] = set()
        for spec in settings.models:
            self.breaker(spec.name)

    def breaker(self, model: str) -> CircuitBreaker:
        if model not in self.breakers:
            self.breakers[model] = CircuitBreaker(
                model,
                self._settings.breaker_failure_threshold,
                self._settings.breaker_reset_s,
                on_change=self._breaker_changed,
            )
            self._set_breaker_gauge(model, "closed")
        return self.breakers[model]

    def _set_breaker_gauge(self, model: str, state: State) -> None:
        self._metrics.breaker_state.labels(**self._metrics.rel(model=model)).set(
            BREAKER_STATE_VALUES[state]
        )

    def _breaker_changed(self, model: str, state: State) -> None:
        log.warning("circuit state changed", model=model, state=state)
        self._set_breaker_gauge(model, state)
        if self._on_breaker_change is not None:
            task = asyncio.get_running_loop().create_task(self._on_breaker_change(model, state))
            self._pending_notifications.add(task)
            task.add_done_callback(self._pending_notifications.discard)

    def any_circuit_usable(self) -> bool:
        return any(b.state != "open" for b in self.breakers.values())

    def circuit_usable(self, model: str) -> bool:
        return self.breaker(model).state != "open"

    def refresh_circuit_states(self) -> None:
        """A breaker moves from open to half-open by time alone, seen when its state is
        read: read them all, so a scrape sees a circuit that no task has tried since (a
        fallback's, say) as half-open, not as still open."""
        for breaker in self.breakers.values():
            _ = breaker.state

    async def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        operation: str = "chat",
    ) -> ChatResult:
        s = self._settings
        breaker = self.breaker(model)
        try:
            async for attempt in stamina.retry_context(
                on=_RETRIED,
                attempts=s.llm_retry_attempts,
                timeout=None,
                wait_initial=s.llm_retry_wait_initial_s,
                wait_max=s.llm_retry_wait_max_s,
                wait_jitter=s.llm_retry_wait_initial_s,
            ):
                with attempt:
                    if attempt.num > 1:
                        self._metrics.retries.labels(**self._metrics.rel(model=model)).inc()
                    if not breaker.allow():
                        raise CircuitOpenError(
                            model, breaker.seconds_until_probe(), breaker.last_failure
                        )
                    return await self._attempt(breaker, model, messages, tools, operation)
        except openai.OpenAIError as exc:
            raise LLMError(f"{operation} with model {model!r} failed: {_describe(exc)}") from exc
        # MalformedResponseError, an LLMError already, goes on as it is.
        raise AssertionError("unreachable: stamina either returns or raises")  # pragma: no cover

    async def _attempt(
        self,
        breaker: CircuitBreaker,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        operation: str,
    ) -> ChatResult:
        m = self._metrics
        body: dict[str, Any] = {"model": model, "messages": messages}
        if tools:
            body["tools"] = tools
        with self._tracer.start_as_current_span(f"chat {model}") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.request.model", model)
            span.set_attribute("agent.llm.purpose", operation)
            started = time.perf_counter()
            error_type = ""
            inflight = m.inflight_llm.labels(**m.rel(model=model))
            try:
                async with self._semaphore:
                    inflight.inc()
                    try:
                        # The SDK's own request path (status errors, timeouts, parsing
                        # into ChatCompletion) without `create`'s walk of the messages and
                        # tool schemas against its TypedDicts, which cannot change a body
                        # of plain JSON: 0.95 ms of CPU per call instead of 1.6 to 2.4.
                        response = await self._client.post(
                            "/chat/completions", cast_to=ChatCompletion, body=body
                        )
                    finally:
                        inflight.dec()
            except _TRANSIENT as exc:
                error_type = type(exc).__name__
                breaker.record_failure(_describe(exc))
                span.set_status(StatusCode.ERROR, error_type)
                span.set_attribute("error.type", error_type)
                raise
            except BaseException as exc:
                error_type = type(exc).__name__
                breaker.release_probe()
                span.set_status(StatusCode.ERROR, error_type)
                span.set_attribute("error.type", error_type)
                raise
            finally:
                m.operation_duration.labels(
                    **m.rel(
                        gen_ai_operation_name="chat",
                        gen_ai_request_model=model,
                        error_type=error_type,
                    )
                ).observe(time.perf_counter() - started)
            try:
                reply = self._reply(model, response, body)
            except MalformedResponseError as exc:
                breaker.record_failure(str(exc))
                span.set_status(StatusCode.ERROR, str(exc))
                span.set_attribute("error.type", type(exc).__name__)
                raise
            breaker.record_success()
            prompt_tokens, completion_tokens = reply.prompt_tokens, reply.completion_tokens
            for kind, n in (("input", prompt_tokens), ("output", completion_tokens)):
                m.token_usage.labels(
                    **m.rel(
                        gen_ai_operation_name="chat",
                        gen_ai_request_model=model,
                        gen_ai_token_type=kind,
                    )
                ).observe(n)
            span.set_attribute("gen_ai.usage.input_tokens", prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", completion_tokens)
            return reply

    def _reply(self, model: str, response: ChatCompletion, body: dict[str, Any]) -> ChatResult:
        """The answer as the agent may use it: the model's output is untrusted input, so
        everything it decides the size or the name of is bounded here, and an answer
        with nothing in it is an error rather than an empty result."""
        if not response.choices:
            self._anomaly(model, "no_choices")
            raise MalformedResponseError(f"chat with model {model!r} answered no choices")
        message = response.choices[0].message
        limit = self._settings.max_answer_chars
        functions = [tc for tc in (message.tool_calls or []) if tc.type == "function"]
        if len(functions) > MAX_TOOL_CALLS:
            self._anomaly(model, "too_many_tool_calls")
            functions = functions[:MAX_TOOL_CALLS]
        if any(len(tc.function.arguments) > limit for tc in functions):
            self._anomaly(model, "oversized")
        calls = [
            ToolCall(
                id=tc.id[:MAX_TOOL_NAME_CHARS],
                name=tc.function.name[:MAX_TOOL_NAME_CHARS],
                # Cut arguments are no longer JSON: the tool refuses them, to the model.
                arguments=tc.function.arguments[:limit],
            )
            for tc in functions
        ]
        content = message.content
        if not (content or "").strip() and not calls:
            self._anomaly(model, "empty_message")
            raise MalformedResponseError(
                f"chat with model {model!r} answered an empty message (no content, no tool calls)"
            )
        if content is not None and len(content) > limit:
            self._anomaly(model, "oversized")
            content = (
                content[:limit] + f" [answer cut: {len(content) - limit} more characters than "
                f"the {limit} AGENT_MAX_ANSWER_CHARS allows]"
            )
        usage = response.usage
        if usage is not None and usage.prompt_tokens + usage.completion_tokens > 0:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        else:
            # Costed at zero, the call would escape the tenant's budget: estimate instead,
            # from what was sent and what came back (the answer as sent, before any cut).
            self._anomaly(model, "missing_usage")
            prompt_tokens = estimate_tokens(body)
            completion_tokens = estimate_tokens(message.model_dump(mode="json"))
            log.warning(
                "LLM response without token usage; estimated",
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        return ChatResult(
            model=model,
            content=content,
            tool_calls=calls,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    def _anomaly(self, model: str, kind: str) -> None:
        self._metrics.llm_anomalies.labels(**self._metrics.rel(model=model, kind=kind)).inc()

    async def aclose(self) -> None:
        await self._client.close()


def estimate_tokens(payload: object) -> int:
    """Tokens in a payload, estimated on the high side: a token is about 4 bytes of
    English text and fewer of most other scripts, so a third of the UTF-8 bytes."""
    size = len(json.dumps(payload, ensure_ascii=False).encode())
    return math.ceil(size / 3)


def _describe(exc: openai.OpenAIError) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code} ({type(exc).__name__})"
    return type(exc).__name__
