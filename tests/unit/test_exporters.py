"""Which span exporters ``OTEL_TRACES_EXPORTER`` selects (the real OTLP export is proven from real
processes in test_logs.py)."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from orchestrator.tracing import span_processors


def _exporters(value: str) -> list[type]:
    processors = span_processors(value)
    try:
        assert all(isinstance(p, BatchSpanProcessor) for p in processors)
        return [type(p.span_exporter) for p in processors]  # type: ignore[attr-defined]
    finally:
        for processor in processors:
            processor.shutdown()


def test_off_unless_asked_for() -> None:
    assert _exporters("") == []
    assert _exporters("none") == []


def test_otlp_console_or_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4318")
    assert _exporters("otlp") == [OTLPSpanExporter]
    assert _exporters("console") == [ConsoleSpanExporter]
    assert _exporters(" OTLP , console ") == [OTLPSpanExporter, ConsoleSpanExporter]


def test_an_unknown_exporter_is_reported_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    assert _exporters("zipkin") == []
    assert "trace exporter 'zipkin' is not available" in caplog.text
