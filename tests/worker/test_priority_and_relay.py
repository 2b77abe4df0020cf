"""Queue priority on a busy worker, and the outbox relay delivering what was never published."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from orchestrator import outbox, store
from orchestrator.broker import Publisher, connect
from orchestrator.db import create_engine, db_now
from orchestrator.settings import Settings
from orchestrator.topology import Topology
from orchestrator_scheduler.scheduler import Scheduler
from orchestrator_worker.worker import Worker
from tests.worker.test_worker import CATALOG, ended, enqueue, wait_for_states


async def start_worker(settings: Settings) -> tuple[asyncio.Event, asyncio.Task[None], Worker]:
    worker = Worker(settings, CATALOG, shutdown_grace=5)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 20)
    return stop, task, worker


async def test_waiting_critical_work_runs_before_default_work(
    make_settings: Callable[..., Settings], postgres_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        postgres_url,
        worker_ops_port=0,
        worker_concurrency=1,
        worker_queues=["critical", "default"],
    )
    marks = tmp_path / "order.txt"
    calls = [("tests.record", [str(marks), f"default-{i}", 0.02], "default") for i in range(6)]
    calls += [("tests.record", [str(marks), f"critical-{i}", 0.02], "critical") for i in range(6)]
    ids = await enqueue(settings, calls)
    stop, task, _ = await start_worker(settings)
    await wait_for_states(settings, ids, ended)
    stop.set()
    await asyncio.wait_for(task, 30)
    order = marks.read_text().splitlines()
    assert order[:6] == [f"critical-{i}" for i in range(6)], order


async def test_freed_slot_takes_critical_before_waiting_default(
    make_settings: Callable[..., Settings], postgres_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        postgres_url,
        worker_ops_port=0,
        worker_concurrency=1,
        worker_queues=["critical", "default"],
    )
    marks = tmp_path / "order.txt"
    stop, task, _ = await start_worker(settings)
    defaults = await enqueue(
        settings, [("tests.record", [str(marks), f"default-{i}", 0.2], "default") for i in range(5)]
    )
    await asyncio.sleep(0.3)  # the first default job is running; four wait in RabbitMQ
    criticals = await enqueue(
        settings,
        [("tests.record", [str(marks), f"critical-{i}", 0.0], "critical") for i in range(2)],
    )
    await wait_for_states(settings, defaults + criticals, ended)
    stop.set()
    await asyncio.wait_for(task, 30)
    order = marks.read_text().splitlines()
    first_critical = order.index("critical-0")
    assert first_critical <= 2, order  # after at most the running and one racing default job
    assert order.index("critical-1") == first_critical + 1, order


async def test_relay_publishes_entries_the_fast_path_never_sent(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    settings = make_settings(
        database_url,
        worker_ops_port=0,
        scheduler_ops_port=0,
        outbox_relay_after_seconds=0.0,
        outbox_relay_interval_seconds=0.2,
    )
    engine = create_engine(settings.database_url)
    new = [
        store.NewJob(name="tests.add", queue="default", args=[i, i], kwargs={}) for i in range(5)
    ]
    # Commit jobs and outbox entries, then "crash" before publishing: only the relay can help.
    async with engine.begin() as conn:
        pending = await store.create_jobs(conn, new, await db_now(conn))
    # A publish that fails after commit (broker unreachable) leaves its entry for the relay too.
    bad_connection = await connect(settings.amqp_url, name="doomed")
    await bad_connection.close()
    doomed = Publisher(bad_connection, Topology(settings.broker_namespace), 1)
    async with engine.begin() as conn:
        assert await outbox.publish_pending(conn, doomed, pending[:2]) == 0
    async with engine.connect() as conn:
        assert await outbox.backlog(conn) == 5
    stop, task, _ = await start_worker(settings)
    scheduler_stop = asyncio.Event()
    scheduler = asyncio.create_task(Scheduler(settings).run(scheduler_stop))
    rows = await wait_for_states(settings, [j.id for j in new], ended)
    assert [rows[j.id].result for j in new] == [0, 2, 4, 6, 8]
    # The relay deletes an entry after its confirm, which can land just after the job ran.
    for _ in range(100):
        async with engine.connect() as conn:
            if await outbox.backlog(conn) == 0:
                break
        await asyncio.sleep(0.05)
    async with engine.connect() as conn:
        assert await outbox.backlog(conn) == 0
        count = (
            await conn.execute(sa.select(sa.func.count()).select_from(store.jobs_table))
        ).scalar()
        assert count == 5
    scheduler_stop.set()
    stop.set()
    await asyncio.wait_for(asyncio.gather(task, scheduler), 30)
    await engine.dispose()
