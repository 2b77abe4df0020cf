"""The caller's W3C trace context as HTTP headers, for the client (OpenTelemetry's API only).

The client sends it with each request so that what the API does joins the caller's trace. Only
``opentelemetry-api`` is needed here: an application that enqueues jobs does not install the SDK,
and without a configured tracer provider there is no active span, so no headers.
"""

from __future__ import annotations

from opentelemetry import propagate


def current_headers() -> dict[str, str]:
    """``traceparent``/``tracestate`` of the active span, stored with a job and its messages."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
