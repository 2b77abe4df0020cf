"""W3C trace context and the spans about a job, by OpenTelemetry's API only.

The client sends the caller's context with each request (:func:`current_headers`) so that what
the API does joins the caller's trace; the broker and the roles name and link their spans with
the helpers here. Only ``opentelemetry-api`` is needed: an application that enqueues jobs does
not install the SDK, and without a configured tracer provider there is no active span, so no
headers. Installing the SDK's provider and exporters is :mod:`orchestrator.tracing` (the roles'
runtime), which re-exports these names.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from opentelemetry import context, propagate, trace

tracer = trace.get_tracer("orchestrator")

# Span attribute names, the same in every service.
JOB_ID = "orchestrator.job.id"
JOB_NAME = "orchestrator.job.name"
QUEUE = "orchestrator.queue"
ATTEMPT = "orchestrator.attempt"


def current_headers() -> dict[str, str]:
    """``traceparent``/``tracestate`` of the active span, stored with a job and its messages."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def job_attributes(
    job_id: uuid.UUID | str,
    name: str | None = None,
    queue: str | None = None,
    attempt: int | None = None,
) -> dict[str, str | int]:
    """The attributes that name a job on every span about it."""
    attributes: dict[str, str | int] = {JOB_ID: str(job_id)}
    if name is not None:
        attributes[JOB_NAME] = name
    if queue is not None:
        attributes[QUEUE] = queue
    if attempt is not None:
        attributes[ATTEMPT] = attempt
    return attributes


def headers_of(span: trace.Span) -> dict[str, str]:
    """``traceparent``/``tracestate`` naming ``span`` as the parent."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def context_from(headers: Mapping[str, Any] | None) -> context.Context:
    """The context named by W3C headers (an empty context, i.e. a new trace, when they don't)."""
    carrier = {str(k): str(v) for k, v in (headers or {}).items()}
    return propagate.extract(carrier)


def trace_id_of(span: trace.Span) -> str | None:
    """The span's trace id as 32 hex digits (as backends show it); None for no valid span."""
    span_context = span.get_span_context()
    return f"{span_context.trace_id:032x}" if span_context.is_valid else None
