"""OpenTelemetry tracing: a tracer provider, exported over OTLP/HTTP when configured."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from agent_app.settings import Settings

TRACER_NAME = "agent_app"


def build_provider(
    settings: Settings, role: str, extra_processor: SpanProcessor | None = None
) -> TracerProvider:
    resource = Resource.create(
        {
            "service.name": f"agent-app-{role}",
            "service.version": settings.release_version,
            "deployment.track": settings.release_track,
            "deployment.environment.name": settings.environment,
        }
    )
    provider = TracerProvider(resource=resource)
    if settings.otlp_endpoint:
        # Imported lazily: the exporter pulls in protobuf, which only matters when used.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    return provider


def tracer(provider: TracerProvider) -> trace.Tracer:
    return provider.get_tracer(TRACER_NAME)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
