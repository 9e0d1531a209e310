"""Traces across hops: W3C trace context travels in the Kafka header `traceparent`.

Every consumed record is handled in a span whose parent is the record's `traceparent`; every event
written to an outbox carries the `traceparent` of the span that wrote it; the HTTP intake starts
from the request's `traceparent` if the portal sent one. So one application's path, from intake to
notify, is one trace.

Exporting is off by default and configured by the standard OpenTelemetry variables: set
`OTEL_TRACES_EXPORTER=otlp` (and `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, ...) to send
spans to a collector. Without an exporter, spans are still created, so trace ids are propagated
and logged, but nothing leaves the process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PROPAGATOR = TraceContextTextMapPropagator()
_configured = False


def configure_tracing(service: str) -> None:
    """Install the SDK once per process; add the OTLP exporter only when the OTEL_* settings ask."""
    global _configured
    if _configured:
        return
    _configured = True
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", f"clustergrants-{service}")})
    provider = TracerProvider(resource=resource)
    if os.environ.get("OTEL_TRACES_EXPORTER", "none").lower() == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def tracer() -> trace.Tracer:
    return trace.get_tracer("clustergrants")


def traceparent_headers(context: otel_context.Context | None = None) -> list[tuple[str, str]]:
    """The trace of `context` (else the current span's) as headers to carry along (empty when none)."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context=context)
    return sorted(carrier.items())


def context_from(headers: Iterable[tuple[str, bytes | None]] | Mapping[str, str] | None) -> otel_context.Context:
    """The trace context a record or request carries; an invalid `traceparent` is ignored (W3C)."""
    carrier: dict[str, str] = {}
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for name, value in items:
        if name.lower() in ("traceparent", "tracestate") and value is not None:
            carrier[name.lower()] = value.decode(errors="replace") if isinstance(value, bytes) else value
    return PROPAGATOR.extract(carrier)


@contextmanager
def span(name: str, parent: otel_context.Context | None, kind: SpanKind, **attributes: str | int) -> Iterator[Span]:
    with tracer().start_as_current_span(name, context=parent, kind=kind, attributes=attributes) as current:
        yield current


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
