"""The worker against real RabbitMQ and the store: claim, run, record."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import sqlalchemy as sa

from orchestrator import outbox, store
from orchestrator.broker import Publisher, connect
from orchestrator.catalog import Catalog
from orchestrator.db import create_engine, db_now
from orchestrator.settings import Settings
from orchestrator.topology import Topology
from orchestrator_worker.worker import Worker

CATALOG = Catalog.from_modules(["tests.worker_jobs"])


async def enqueue(settings: Settings, calls: list[tuple[str, list[Any], str]]) -> list[uuid.UUID]:
    engine = create_engine(settings.database_url)
    connection = await connect(settings.amqp_url, name="test-enqueue")
    try:
        # The job's own retry budget, as the API would store it (unknown names: none).
        new = [
            store.NewJob(name=n, queue=q, args=a, kwargs={}, retries=_retries(n))
            for n, a, q in calls
        ]
        async with engine.begin() as conn:
            pending = await store.create_jobs(conn, new, await db_now(conn))
        publisher = Publisher(connection, Topology(settings.broker_namespace), 5)
        async with engine.begin() as conn:
            await outbox.publish_pending(conn, publisher, pending)
        return [j.id for j in new]
    finally:
        await connection.close()
        await engine.dispose()


def _retries(name: str) -> int:
    function = CATALOG.get(name)
    return function.spec.retries if function is not None else 0


async def wait_for_states(
    settings: Settings, ids: list[uuid.UUID], done: Callable[[str], bool], timeout: float = 20
) -> dict[uuid.UUID, sa.Row[Any]]:
    engine = create_engine(settings.database_url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with engine.connect() as conn:
                rows = {
                    r.id: r
                    for r in await conn.execute(
                        sa.select(store.jobs_table).where(store.jobs_table.c.id.in_(ids))
                    )
                }
            if all(done(r.state) for r in rows.values()) and len(rows) == len(ids):
                return rows
            if asyncio.get_running_loop().time() > deadline:
                states = {str(k): v.state for k, v in rows.items()}
                raise AssertionError(f"jobs did not finish in time: {states}")
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


@pytest.fixture
async def running_worker(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[tuple[Settings, Worker]]:
    settings = make_settings(database_url, worker_ops_port=0, worker_concurrency=4)
    worker = Worker(settings, CATALOG, shutdown_grace=5)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 20)
    yield settings, worker
    stop.set()
    await asyncio.wait_for(task, 30)


def ended(state: str) -> bool:
    return state in ("Succeeded", "Failed")


async def test_sync_and_async_jobs_succeed_with_results_and_history(running_worker):
    settings, _ = running_worker
    ids = await enqueue(
        settings, [("tests.add", [1, 2], "default"), ("tests.async_add", [3, 4], "default")]
    )
    rows = await wait_for_states(settings, ids, ended)
    assert [rows[i].result for i in ids] == [3, 7]
    assert all(rows[i].state == "Succeeded" and rows[i].attempt == 1 for i in ids)
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        history = await store.get_history(conn, ids[0])
    await engine.dispose()
    assert [h.state for h in history] == ["Enqueued", "Processing", "Succeeded"]


async def test_failure_stores_type_message_and_traceback(running_worker):
    settings, _ = running_worker
    [job_id] = await enqueue(settings, [("tests.boom", ["kaput"], "default")])
    row = (await wait_for_states(settings, [job_id], ended))[job_id]
    assert row.state == "Failed"
    assert row.error_type == "builtins.ValueError"
    assert row.error_message == "kaput"
    assert "raise ValueError(message)" in row.error_traceback


async def test_unknown_name_and_bad_arguments_fail_clearly(running_worker):
    settings, _ = running_worker
    ids = await enqueue(
        settings, [("tests.not_there", [], "default"), ("tests.add", ["x", 2], "default")]
    )
    rows = await wait_for_states(settings, ids, ended)
    assert rows[ids[0]].state == "Failed"
    assert "not in this worker's catalog" in rows[ids[0]].error_message
    assert rows[ids[1]].state == "Failed"
    assert "argument 'a'" in rows[ids[1]].error_message


async def test_duplicate_message_runs_the_job_once(running_worker, tmp_path: Path):
    settings, _ = running_worker
    marks = tmp_path / "marks.txt"
    [job_id] = await enqueue(settings, [("tests.record", [str(marks), "once"], "default")])
    # Publish the same wake-up twice more: the claim's compare-and-set must drop the copies.
    connection = await connect(settings.amqp_url, name="dup")
    publisher = Publisher(connection, Topology(settings.broker_namespace), 5)
    from orchestrator.broker import JobMessage

    assert await publisher.publish([JobMessage(job_id, "default"), JobMessage(job_id, "default")])
    await connection.close()
    await wait_for_states(settings, [job_id], ended)
    await asyncio.sleep(0.5)
    assert marks.read_text().splitlines() == ["once"]


async def test_undecodable_message_goes_to_the_dead_letter_queue(running_worker):
    settings, _ = running_worker
    topology = Topology(settings.broker_namespace)
    connection = await aio_pika.connect(settings.amqp_url)
    channel = await connection.channel()
    exchange = await channel.get_exchange(topology.jobs_exchange.name)
    await exchange.publish(aio_pika.Message(b"not json"), routing_key="default")
    dead = await channel.declare_queue(topology.dead_letter_queue.name, passive=True)
    for _ in range(100):
        message = await dead.get(fail=False)
        if message is not None:
            assert message.body == b"not json"
            await message.ack()
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the undecodable message never reached the dead-letter queue")
    await connection.close()


