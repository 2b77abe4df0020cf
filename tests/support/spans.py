"""One in-memory span exporter for the whole test process (a process has one tracer provider;
adding an exporter per module would send every span to each of them)."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import tracing

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _installed_exporter() -> InMemorySpanExporter:
    # Services install their provider in prepare_service; tests add the in-memory exporter to
    # whichever provider the process has, once.
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = tracing.new_provider("tests")  # as the roles make theirs: bounded spans
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    return _EXPORTER


@pytest.fixture
def spans(_installed_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """Every span finished in this process during the test."""
    _installed_exporter.clear()
    return _installed_exporter
