"""A role that exports no spans records none: its spans carry ids only, and still propagate."""

from __future__ import annotations

import os
import subprocess
import sys

from opentelemetry import propagate, trace

from orchestrator import tracing


def test_spans_carry_the_trace_and_a_sampled_flag_downstream() -> None:
    tracer = tracing.IdsOnlyTracerProvider().get_tracer("orchestrator")
    with tracer.start_as_current_span("enqueue", attributes={"a": 1}) as root:
        assert not root.is_recording()  # nothing kept: no attributes, no events, no timing
        root.set_attribute("b", 2)  # accepted and dropped
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        with tracer.start_as_current_span("child") as child:
            assert trace.get_current_span() is child
    ids = root.get_span_context()
    assert ids.is_valid and ids.trace_flags.sampled  # a downstream role that exports records
    assert carrier["traceparent"] == f"00-{ids.trace_id:032x}-{ids.span_id:016x}-01"
    assert child.get_span_context().trace_id == ids.trace_id
    assert child.get_span_context().span_id != ids.span_id
    # A job's stored context, restored later (a message's headers): its trace goes on.
    restored = tracer.start_span("run", context=tracing.context_from(carrier))
    assert restored.get_span_context().trace_id == ids.trace_id
    unsampled = {"traceparent": f"00-{ids.trace_id:032x}-{ids.span_id:016x}-00"}
    kept = tracer.start_span("run", context=tracing.context_from(unsampled))
    assert not kept.get_span_context().trace_flags.sampled  # the caller's decision stands


def _provider_chosen(**env: str) -> str:
    code = (
        "from opentelemetry import trace; from orchestrator import tracing; "
        "tracing.configure('worker'); print(type(trace.get_tracer_provider()).__name__)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_the_sdk_records_only_when_something_exports_or_samples() -> None:
    assert _provider_chosen() == "IdsOnlyTracerProvider"
    assert _provider_chosen(OTEL_TRACES_EXPORTER="none") == "IdsOnlyTracerProvider"
    assert _provider_chosen(OTEL_TRACES_EXPORTER="console") == "TracerProvider"
    assert _provider_chosen(OTEL_TRACES_SAMPLER="traceidratio") == "TracerProvider"
