"""Tracing, logging and redaction tests drive the API in-process like the API tests do, and
collect finished spans in memory."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.api.conftest import start_api

__all__ = ["spans", "start_api"]

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _installed_exporter() -> InMemorySpanExporter:
    # The process has one tracer provider (services install theirs in prepare_service); add an
    # in-memory exporter to it, once.
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    return _EXPORTER


@pytest.fixture
def spans(_installed_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    """Every span finished in this process during the test."""
    _installed_exporter.clear()
    return _installed_exporter
