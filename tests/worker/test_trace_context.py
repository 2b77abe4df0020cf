"""W3C trace context travels from the enqueuing span, through the outbox and the AMQP headers,
to the span that runs the job."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import outbox, store, tracing
from orchestrator.broker import Publisher, connect
from orchestrator.db import create_engine, db_now
from orchestrator.settings import Settings
from orchestrator.topology import Topology, declare_base, declare_work_queue
from orchestrator_worker.worker import Worker
from tests.worker.test_worker import CATALOG, ended, wait_for_states


async def test_trace_context_reaches_the_message_and_the_job_span(
    spans: InMemorySpanExporter, make_settings: Callable[..., Settings], postgres_url: str
) -> None:
    settings = make_settings(postgres_url, worker_ops_port=0)
    topology = Topology(settings.broker_namespace)
    engine = create_engine(settings.database_url)
    connection = await connect(settings.amqp_url, name="trace-test")
    with tracing.tracer.start_as_current_span("enqueue request") as request_span:
        headers = tracing.current_headers()
        new = store.NewJob(
            name="tests.add", queue="default", args=[1, 2], kwargs={}, trace_context=headers
        )
        async with engine.begin() as conn:
            pending = await store.create_jobs(conn, [new], await db_now(conn))
    trace_id = request_span.get_span_context().trace_id
    assert headers["traceparent"].split("-")[1] == f"{trace_id:032x}"

    # The published message carries the publish span's context, in the same trace.
    channel = await connection.channel()
    await declare_base(channel, topology)
    queue = await declare_work_queue(channel, topology, "default")
    async with engine.begin() as conn:
        assert await outbox.publish_pending(conn, Publisher(connection, topology, 5), pending) == 1
    message = await queue.get(timeout=5)
    (publish,) = [s for s in spans.get_finished_spans() if s.name == "publish default"]
    assert publish.parent is not None
    assert publish.parent.span_id == request_span.get_span_context().span_id
    _, carried_trace, carried_span, _ = str(message.headers["traceparent"]).split("-")
    assert carried_trace == f"{trace_id:032x}"
    assert carried_span == f"{publish.context.span_id:016x}"
    await message.nack(requeue=True)
    await connection.close()

    worker = Worker(settings, CATALOG, shutdown_grace=5)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await wait_for_states(settings, [new.id], ended)
    stop.set()
    await asyncio.wait_for(task, 30)
    await engine.dispose()
    run_spans = [s for s in spans.get_finished_spans() if s.name == "run tests.add"]
    assert run_spans, [s.name for s in spans.get_finished_spans()]
    assert run_spans[-1].context.trace_id == trace_id
    # The run is a child of the publish that delivered it.
    assert run_spans[-1].parent is not None
    assert run_spans[-1].parent.span_id == publish.context.span_id
    assert run_spans[-1].attributes["orchestrator.job.id"] == str(new.id)
    assert run_spans[-1].attributes["orchestrator.attempt"] == 1
