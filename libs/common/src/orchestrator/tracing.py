"""W3C trace context: carried from the HTTP request that enqueues, through the outbox and the
message headers, to the worker that runs the job."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

tracer = trace.get_tracer("orchestrator")
log = logging.getLogger(__name__)


def configure(service_name: str) -> None:
    """Install the SDK tracer provider so every span has real ids to propagate.

    Exporting follows the standard ``OTEL_*`` variables and is off unless asked for
    (``OTEL_TRACES_EXPORTER=console``; ``OTEL_SDK_DISABLED=true`` turns tracing off entirely).
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    name = os.environ.get("OTEL_SERVICE_NAME", f"orchestrator-{service_name}")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "none").lower()
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter not in ("none", ""):
        log.warning("trace exporter %r is not available; spans are not exported", exporter)
    trace.set_tracer_provider(provider)


def current_headers() -> dict[str, str]:
    """``traceparent``/``tracestate`` of the active span, stored with a job and its messages."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(headers: Mapping[str, Any] | None) -> context.Context:
    carrier = {str(k): str(v) for k, v in (headers or {}).items()}
    return propagate.extract(carrier)
