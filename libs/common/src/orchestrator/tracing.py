"""W3C trace context: carried from the HTTP request that enqueues, through the outbox and the
message headers, to the worker that runs the job."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import context, propagate, trace

tracer = trace.get_tracer("orchestrator")


def current_headers() -> dict[str, str]:
    """``traceparent``/``tracestate`` of the active span, stored with a job and its messages."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(headers: Mapping[str, Any] | None) -> context.Context:
    carrier = {str(k): str(v) for k, v in (headers or {}).items()}
    return propagate.extract(carrier)
