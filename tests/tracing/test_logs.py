"""Structured logs and OTLP export from real processes.

Real api, worker and scheduler processes with ``ORCHESTRATOR_LOG_FORMAT=json`` write one JSON
object a line, and every line a job writes names its job and its trace; secret arguments appear in
no line. With ``OTEL_TRACES_EXPORTER=otlp`` they send their spans to the OTLP/HTTP endpoint named
by ``OTEL_EXPORTER_OTLP_ENDPOINT`` (a receiver in this test). Console lines (the default) carry the
same context as JSON ones.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import Client, logs, tracing
from tests.support.system import System
from tests.tracing.jobs import PASSWORD, TOKEN

pytestmark = pytest.mark.e2e

JOBS = "tests.tracing.jobs"
ROLES = ("api", "worker", "scheduler")


class OtlpReceiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace endpoint: keeps every span it is sent, with its service's name."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        self.spans: list[tuple[str, Any]] = []
        self.raw = b""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _OtlpHandler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.server.spans.append((attributes["service.name"], span))
            self.server.raw += body
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def system(
    postgres_url: str, amqp_url: str, tmp_path: Path, receiver: OtlpReceiver
) -> Iterator[System]:
    running = System(
        database_url=postgres_url,
        jobs=JOBS,
        amqp_url=amqp_url,
        log_dir=tmp_path,
        extra_env={
            "ORCHESTRATOR_LOG_FORMAT": "json",
            "ORCHESTRATOR_LOG_LEVEL": "INFO",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
    )
    try:
        running.start("api", "api")
        # DEBUG: the worker also logs each run's arguments (secrets redacted).
        running.start("worker", "worker", ORCHESTRATOR_LOG_LEVEL="DEBUG")
        running.start("scheduler", "scheduler")
        running.wait_for_api()
        running.wait_for_catalog(f"{JOBS}.flaky_upload")
        yield running
    finally:
        running.stop_all()


def _enqueue(system: System, trace_id: str, body: dict[str, Any]) -> str:
    """Enqueue as a traced caller would: the job's lines must name this trace."""
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    response = httpx.post(
        f"{system.api_url}/api/v1/jobs", json=body, headers={"traceparent": traceparent}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _records(text: str, role: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"{role} wrote a line that is not JSON: {line!r}")
    return records


def test_every_line_a_job_writes_names_its_job_and_trace(
    system: System, receiver: OtlpReceiver
) -> None:
    sign_in_trace, upload_trace = uuid.uuid4().hex, uuid.uuid4().hex
    # Delayed, so the scheduler promotes it (and exports a span of that).
    sign_in = _enqueue(
        system,
        sign_in_trace,
        {"job": f"{JOBS}.sign_in", "args": ["ann", PASSWORD], "delay_seconds": 1},
    )
    upload = _enqueue(
        system,
        upload_trace,
        {"job": f"{JOBS}.flaky_upload", "kwargs": {"name": "report.pdf", "token": TOKEN}},
    )
    isolated_trace = uuid.uuid4().hex
    isolated = _enqueue(
        system,
        isolated_trace,
        {"job": f"{JOBS}.sign_in_isolated", "kwargs": {"user": "bo", "password": PASSWORD}},
    )
    with Client(system.api_url) as client:
        assert client.wait(sign_in, timeout=30) == "ann"
        assert client.wait(upload, timeout=30) == "report.pdf"
        assert client.wait(isolated, timeout=30) == "bo"
    system.stop_all()  # flushes the logs and the span exporters
    outputs = {role: system.log_of(role) for role in ROLES}

    for role, text in outputs.items():
        assert PASSWORD not in text and TOKEN not in text, role
        for record in _records(text, role):
            assert {"time", "level", "logger", "message", "job_id", "trace_id"} <= record.keys()

    worker = _records(outputs["worker"], "worker")
    by_job = {
        job_id: [r for r in worker if r["job_id"] == job_id]
        for job_id in (sign_in, upload, isolated)
    }
    # The sync job (run in a worker thread) and the async one log with their context.
    signing = [r for r in by_job[sign_in] if r["logger"] == JOBS]
    assert [r["message"] for r in signing] == ["signing in ann"]
    uploading = [r for r in by_job[upload] if r["logger"] == JOBS]
    assert [r["message"] for r in uploading] == [
        "uploading report.pdf, attempt 1",
        "uploading report.pdf, attempt 2",
    ]
    # A job in process isolation logs from its child process, with the same context.
    from_child = [r for r in by_job[isolated] if r["logger"] == JOBS]
    assert [r["message"] for r in from_child] == ["signing in bo from a child process"]
    for job_id, trace_id, name in (
        (sign_in, sign_in_trace, "sign_in"),
        (upload, upload_trace, "flaky_upload"),
        (isolated, isolated_trace, "sign_in_isolated"),
    ):
        lines = by_job[job_id]
        assert {r["job_name"] for r in lines} == {f"{JOBS}.{name}"}
        assert {r["trace_id"] for r in lines} == {trace_id}, lines
    # The worker's own debug line shows the arguments, the secret one redacted.
    running = [r for r in by_job[sign_in] if r["message"].startswith("running ")]
    assert running and '"ann"' in running[0]["message"]
    assert '"[redacted]"' in running[0]["message"]

    # Every role exported its spans of the sign-in's trace over OTLP; no secret went with them.
    exported = {
        (service, span.name)
        for service, span in receiver.spans
        if span.trace_id.hex() == sign_in_trace
    }
    assert {
        ("orchestrator-api", "POST /api/v1/jobs"),
        ("orchestrator-api", f"enqueue {JOBS}.sign_in"),
        ("orchestrator-scheduler", f"promote {JOBS}.sign_in"),
        ("orchestrator-scheduler", "publish default"),
        ("orchestrator-worker", f"run {JOBS}.sign_in"),
    } <= exported, exported
    assert PASSWORD.encode() not in receiver.raw and TOKEN.encode() not in receiver.raw


def test_console_lines_carry_the_job_and_trace(spans: InMemorySpanExporter) -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.tracing.console")
    logger.addHandler(logs.handler("console", stream))
    logger.propagate = False
    try:
        logger.warning("outside any job")
        with tracing.tracer.start_as_current_span("run") as span, logs.job_context("j-1", "a.b"):
            logger.warning("inside a job")
        trace_id = tracing.trace_id_of(span)
    finally:
        logger.handlers.clear()
        logger.propagate = True
    outside, inside = stream.getvalue().splitlines()
    assert outside.endswith("WARNING tests.tracing.console outside any job")
    assert inside.endswith(
        f"WARNING tests.tracing.console [job=a.b id=j-1 trace={trace_id}] inside a job"
    )
