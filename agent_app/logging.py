"""structlog JSON logs carrying trace id, task id, tenant and release on every line."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from agent_app.metrics import Metrics
from agent_app.redaction import redact
from agent_app.releases import Release
from agent_app.tracing import current_trace_id

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class _Enrich:
    def __init__(self, release: Release, metrics: Metrics | None) -> None:
        self._release = release
        self._metrics = metrics

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event.setdefault("release_version", self._release.version)
        event.setdefault("release_track", self._release.track)
        event.setdefault("environment", self._release.environment)
        trace_id = current_trace_id()
        if trace_id:
            event.setdefault("trace_id", trace_id)
        # Redacting here, the last step before rendering, covers every field any caller adds.
        for key, value in list(event.items()):
            if isinstance(value, str):
                result = redact(value)
                if result.total:
                    event[key] = result.text
                    if self._metrics is not None:
                        for kind, n in result.counts.items():
                            self._metrics.redactions.labels(
                                **self._metrics.rel(kind=kind, where="log")
                            ).inc(n)
        return event


def configure(release: Release, level: str, metrics: Metrics | None = None) -> None:
    enrich = _Enrich(release, metrics)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            enrich,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.ERROR)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Libraries (uvicorn, the HTTP clients) log through the standard library; the same
    # chain makes their lines JSON too, with release labels and redaction.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                enrich,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.ERROR))
    # One line per outgoing request is noise next to the app's own LLM metrics and spans.
    for noisy in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
