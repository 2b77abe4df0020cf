"""W3C trace context: carried from the HTTP request that enqueues, through the outbox and the
message headers, to the worker that runs the job.

One job is one trace::

    POST /api/v1/jobs (server, API)
      enqueue <job> (API; its context is stored with the job: ``jobs.trace_context``)
        promote <job> (scheduler, for a delayed job or an overdue retry)
          publish <queue> (producer; its context travels in the message's AMQP headers)
            run <job> (consumer, worker; one per attempt)

Every message of a job (first publish, retries through the delay levels, re-enqueues) starts from
the job's stored context, or from the scheduler's promotion span, and each run is a child of the
publish that delivered it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

# Re-exported: the roles take the API-only helpers from here with the rest of tracing (the
# broker, below the runtime, takes them from orchestrator.propagation).
from orchestrator.propagation import ATTEMPT as ATTEMPT
from orchestrator.propagation import JOB_ID as JOB_ID
from orchestrator.propagation import JOB_NAME as JOB_NAME
from orchestrator.propagation import QUEUE as QUEUE
from orchestrator.propagation import context_from as context_from
from orchestrator.propagation import current_headers as current_headers
from orchestrator.propagation import headers_of as headers_of
from orchestrator.propagation import job_attributes as job_attributes
from orchestrator.propagation import trace_id_of as trace_id_of
from orchestrator.propagation import tracer as tracer

log = logging.getLogger(__name__)


def configure(service_name: str) -> None:
    """Install the SDK tracer provider so every span has real ids to propagate (and to log).

    Exporting follows the standard ``OTEL_*`` variables and is off unless asked for:
    ``OTEL_TRACES_EXPORTER=otlp`` (OTLP over HTTP, configured by ``OTEL_EXPORTER_OTLP_ENDPOINT``
    and the other ``OTEL_EXPORTER_OTLP_*`` variables), ``console``, or both comma-separated;
    ``OTEL_SDK_DISABLED=true`` turns tracing off entirely. ``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_TRACES_SAMPLER`` are honoured by the SDK.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    processors = span_processors(os.environ.get("OTEL_TRACES_EXPORTER", "none"))
    if not processors and not os.environ.get("OTEL_TRACES_SAMPLER"):
        trace.set_tracer_provider(IdsOnlyTracerProvider())
        return
    provider = new_provider(service_name)
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)


class IdsOnlyTracerProvider(trace.TracerProvider):
    """Spans with ids and nothing else, for a role that exports none.

    The SDK's provider records every span (attributes, events, timing) even when no processor
    will ever see it: measured as 5-10 % of the API's and the worker's CPU per job. Spans here
    carry a context only, so what depends on it keeps working: the ``traceparent`` stored with a
    job and sent with its messages, and the trace ids in log lines. A new trace is marked
    sampled, as the SDK's default sampler marks it, so a role further down that does export
    still records its spans of the job. ``OTEL_TRACES_SAMPLER`` set means the SDK decides.
    """

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        return _IdsOnlyTracer()


class _IdsOnlyTracer(trace.Tracer):
    _ids = RandomIdGenerator()

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: Any = None,
        links: Any = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
        else:
            trace_id = self._ids.generate_trace_id()
            flags, state = trace.TraceFlags(trace.TraceFlags.SAMPLED), trace.TraceState()
        span_context = trace.SpanContext(
            trace_id, self._ids.generate_span_id(), False, flags, state
        )
        return trace.NonRecordingSpan(span_context)

    # The API's own return type is a private class (it also decorates coroutine functions,
    # which nothing here does). What a span would record (kind, attributes, links, times,
    # exceptions) is taken and dropped, as start_span drops it.
    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        *_recorded: Any,
        end_on_exit: bool = True,
        **_recorded_by_name: Any,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context)
        with trace.use_span(span, end_on_exit=end_on_exit) as current:
            yield current


def new_provider(service_name: str) -> TracerProvider:
    """The SDK provider every role installs, with bounded spans (:func:`span_limits`)."""
    name = os.environ.get("OTEL_SERVICE_NAME", f"orchestrator-{service_name}")
    return TracerProvider(
        resource=Resource.create({"service.name": name}), span_limits=span_limits()
    )


def span_limits() -> SpanLimits:
    """Bounds on what a span carries: a job's exception message or traceback can be megabytes,
    and span attributes (exception events included) are shipped whole unless cut. Each bound
    is the standard ``OTEL_*_LIMIT`` variable when set, else this module's default."""
    chosen: dict[str, int] = {}
    for argument, variable, default in _LIMITS:
        if os.environ.get(variable) is None:
            chosen[argument] = default
    return SpanLimits(**chosen)


#: Longest attribute value (characters) on a span or its events, e.g. ``exception.message``.
ATTRIBUTE_MAX_CHARS = 8192
_LIMITS = (
    ("max_attribute_length", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", ATTRIBUTE_MAX_CHARS),
    ("max_span_attribute_length", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", ATTRIBUTE_MAX_CHARS),
    ("max_span_attributes", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", 64),
    ("max_events", "OTEL_SPAN_EVENT_COUNT_LIMIT", 32),
    ("max_event_attributes", "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", 16),
    ("max_links", "OTEL_SPAN_LINK_COUNT_LIMIT", 16),
)


def span_processors(exporters: str) -> list[SpanProcessor]:
    """Batching processors for the ``OTEL_TRACES_EXPORTER`` value (``none`` or empty: none)."""
    processors: list[SpanProcessor] = []
    for exporter in (name.strip().lower() for name in exporters.split(",")):
        if exporter == "otlp":
            protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            if protocol != "http/protobuf":
                log.warning("OTLP protocol %r is not installed; using http/protobuf", protocol)
            # Imported only when asked for: it pulls in protobuf and requests.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processors.append(BatchSpanProcessor(OTLPSpanExporter()))
        elif exporter == "console":
            processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
        elif exporter not in ("none", ""):
            log.warning("trace exporter %r is not available; spans are not exported", exporter)
    return processors


def promotion_headers(
    job_id: uuid.UUID,
    name: str,
    queue: str,
    attempt: int,
    stored: Mapping[str, Any] | None,
) -> dict[str, str]:
    """Record the scheduler's promotion of one job as a span in the job's own trace (a child of
    its stored context) and return the headers its new message carries, naming that span."""
    span = tracer.start_span(
        f"promote {name}",
        context=context_from(stored),
        attributes=job_attributes(job_id, name, queue, attempt),
    )
    try:
        return headers_of(span) or dict(stored or {})
    finally:
        span.end()
