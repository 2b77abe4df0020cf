"""One job, one trace: the HTTP request that enqueues, the scheduler's promotion, the publish and
the worker's runs, across real RabbitMQ and PostgreSQL hops.

The API (ASGI in-process), a worker and a scheduler run in this process, so one in-memory
exporter sees every span; the context still only travels the way it does between processes:
stored with the job, kept with outbox entries, carried in AMQP headers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from orchestrator import AsyncClient, JobCall, store, tracing
from orchestrator.catalog import Catalog
from orchestrator.redaction import REDACTED
from orchestrator.settings import Settings
from orchestrator_scheduler.scheduler import Scheduler
from orchestrator_worker.worker import Worker
from tests.api.conftest import LOOPBACK, TEST_JOBS, ApiFactory
from tests.tracing.jobs import PASSWORD, TOKEN
from tests.worker.test_worker import ended, wait_for_states

JOBS = "tests.tracing.jobs"
SIGN_IN = f"{JOBS}.sign_in"
UPLOAD = f"{JOBS}.flaky_upload"


@asynccontextmanager
async def worker_and_scheduler(settings: Settings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    worker = Worker(settings, Catalog.from_modules([JOBS]), shutdown_grace=5)
    tasks = [
        asyncio.create_task(worker.run(stop)),
        asyncio.create_task(Scheduler(settings).run(stop)),
    ]
    try:
        await asyncio.wait_for(worker.ready.wait(), 20)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


def _one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _parent_of(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> ReadableSpan:
    assert span.parent is not None, f"{span.name} has no parent"
    (parent,) = [s for s in spans if s.context.span_id == span.parent.span_id]
    return parent


def _tree(spans: Sequence[ReadableSpan]) -> str:
    """The trace as indented names, for failure messages."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        children.setdefault(span.parent.span_id if span.parent else None, []).append(span)
    known = {s.context.span_id for s in spans}
    roots = [s for key, group in children.items() if key not in known for s in group]
    lines: list[str] = []

    def walk(span: ReadableSpan, depth: int) -> None:
        lines.append(f"{'  ' * depth}{span.name} ({span.kind.name})")
        for child in children.get(span.context.span_id, []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(lines)


def _job_attributes(span: ReadableSpan) -> dict[str, Any]:
    attributes = dict(span.attributes or {})
    return {k: v for k, v in attributes.items() if k.startswith("orchestrator.")}


async def _enqueue(http: Any, **body: Any) -> str:
    response = await http.post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _trace_of(job_id: str, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """The spans of the trace whose enqueue span names ``job_id``."""
    enqueue = [
        s
        for s in spans
        if s.name.startswith("enqueue ")
        and (s.attributes or {}).get("orchestrator.job.id") == job_id
    ]
    assert len(enqueue) == 1, [s.name for s in spans]
    trace_id = enqueue[0].context.trace_id
    return [s for s in spans if s.context.trace_id == trace_id]


async def test_a_delayed_job_and_a_retried_job_each_form_one_trace(
    spans: InMemorySpanExporter,
    start_api: ApiFactory,
    make_settings: Callable[..., Settings],
    postgres_url: str,
) -> None:
    async with start_api(postgres_url, jobs=[TEST_JOBS, JOBS], worker_ops_port=0) as api:
        settings = api.settings.model_copy(update={"scheduler_ops_port": 0})
        async with worker_and_scheduler(settings):
            delayed = await _enqueue(
                api.http, job=SIGN_IN, args=["ann"], kwargs={"password": PASSWORD}, delay_seconds=1
            )
            retried = await _enqueue(api.http, job=UPLOAD, args=["report.pdf", TOKEN])
            rows = await wait_for_states(
                settings, [uuid.UUID(delayed), uuid.UUID(retried)], ended, timeout=60
            )
    assert {row.state for row in rows.values()} == {"Succeeded"}, rows
    finished = spans.get_finished_spans()

    # The delayed job: request → enqueue → promotion → publish → run.
    trace = _trace_of(delayed, finished)
    run = _one(trace, f"run {SIGN_IN}")
    publish = _parent_of(run, trace)
    promote = _parent_of(publish, trace)
    enqueue = _parent_of(promote, trace)
    server = _parent_of(enqueue, trace)
    assert [s.name for s in (server, enqueue, promote, publish, run)] == [
        "POST /api/v1/jobs",
        f"enqueue {SIGN_IN}",
        f"promote {SIGN_IN}",
        "publish default",
        f"run {SIGN_IN}",
    ], _tree(trace)
    assert server.parent is None and server.kind is SpanKind.SERVER
    assert [s for s in trace if s.kind is SpanKind.SERVER] == [server], _tree(trace)
    assert (server.attributes or {})["http.response.status_code"] == 201
    assert publish.kind is SpanKind.PRODUCER and run.kind is SpanKind.CONSUMER
    job = {
        "orchestrator.job.id": delayed,
        "orchestrator.job.name": SIGN_IN,
        "orchestrator.queue": "default",
    }
    assert _job_attributes(enqueue) == job
    assert _job_attributes(promote) == {**job, "orchestrator.attempt": 1}
    assert _job_attributes(run).items() >= {**job, "orchestrator.attempt": 1}.items()
    assert (publish.attributes or {})["orchestrator.job.id"] == delayed
    arguments = str((run.attributes or {})["orchestrator.job.arguments"])
    assert "ann" in arguments and REDACTED in arguments
    assert run.status.status_code is not StatusCode.ERROR

    # The retried job: both attempts in the request's trace, each run a child of the publish
    # that delivered it, the failure recorded on the first.
    trace = _trace_of(retried, finished)
    enqueue = _one(trace, f"enqueue {UPLOAD}")
    assert _parent_of(enqueue, trace).name == "POST /api/v1/jobs"
    runs = sorted(
        (s for s in trace if s.name == f"run {UPLOAD}"),
        key=lambda s: int((s.attributes or {})["orchestrator.attempt"]),
    )
    assert [(s.attributes or {})["orchestrator.attempt"] for s in runs] == [1, 2]
    first, second = runs
    assert first.status.status_code is StatusCode.ERROR
    (exception,) = [e for e in first.events if e.name == "exception"]
    assert (exception.attributes or {})["exception.type"] == "ConnectionError"
    assert "upload of report.pdf refused" in str((exception.attributes or {})["exception.message"])
    assert second.status.status_code is not StatusCode.ERROR and not second.events
    for run in runs:
        publish = _parent_of(run, trace)
        assert publish.kind is SpanKind.PRODUCER
        assert _parent_of(publish, trace) is enqueue
    retry_publish = _parent_of(second, trace)
    assert int((retry_publish.attributes or {})["orchestrator.delay_seconds"]) >= 1

    # Secret arguments appear on no span, in no attribute or event.
    for span in finished:
        texts = [str(v) for v in (span.attributes or {}).values()]
        texts += [str(v) for e in span.events for v in (e.attributes or {}).values()]
        assert not any(PASSWORD in t or TOKEN in t for t in texts), span.name


async def test_the_client_joins_the_callers_trace(
    spans: InMemorySpanExporter, start_api: ApiFactory, postgres_url: str
) -> None:
    async with start_api(postgres_url, jobs=[TEST_JOBS, JOBS]) as api:
        transport = httpx.ASGITransport(app=api.app, client=LOOPBACK)
        async with AsyncClient("http://127.0.0.1", transport=transport) as client:
            with tracing.tracer.start_as_current_span("caller") as caller:
                job_id = await client.enqueue(JobCall.named(SIGN_IN, "ann", PASSWORD))
        async with api.runtime.engine.connect() as conn:
            stored = (await store.get_job(conn, uuid.UUID(job_id))).trace_context
    caller_trace = caller.get_span_context().trace_id
    server = _one(spans.get_finished_spans(), "POST /api/v1/jobs")
    assert server.parent is not None
    assert server.parent.span_id == caller.get_span_context().span_id
    assert server.context.trace_id == caller_trace
    assert stored is not None and stored["traceparent"].split("-")[1] == f"{caller_trace:032x}"
