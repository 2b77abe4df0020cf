"""A worker that begins to stop while its claims are in flight hands those jobs back unstarted.

A worker claims a round of deliveries in one short autocommit statement, so a SIGTERM rarely
lands inside one (the randomized test in ``tests/faults/test_shutdown_races.py`` no longer
requires that it does). Here the window is held open instead: the test locks the jobs' rows in
a transaction of its own, so the worker's claim statement (which waits on row locks, FOR NO KEY
UPDATE without SKIP LOCKED) is seen blocked on them in ``pg_stat_activity``; the worker's
shutdown begins and is seen in process (``worker.stopping``); only then is the lock released.
The claim commits after the worker began to stop, so ``Rounds._claimed`` must hand the jobs
back ("Worker shut down before the job started") instead of starting them; a second worker then
runs each of them once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import outbox, store
from orchestrator.broker import Publisher, connect
from orchestrator.db import create_engine, db_now
from orchestrator.settings import Settings
from orchestrator.store import tables
from orchestrator.topology import Topology
from orchestrator_worker.claims import started_by
from orchestrator_worker.worker import Worker
from tests.worker.test_worker import CATALOG, wait_for_states

UNSTARTED = "Worker shut down before the job started"
JOBS = 3
CONCURRENCY = 4
#: Long enough that the shutdown is still waiting for the claims when the lock goes.
GRACE = 20.0
#: Bound on each wait for something the test caused to become visible.
DEADLINE = 30.0


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until ``condition`` holds, at most ``DEADLINE`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"not seen within {DEADLINE:.0f} s: {what}")
        await asyncio.sleep(0.01)


@dataclass
class Running:
    worker: Worker
    stop: asyncio.Event
    task: asyncio.Task[None]


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    """An in-process worker, ready; stopped on the way out unless it has exited already."""
    worker = Worker(settings, CATALOG, shutdown_grace=GRACE)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.ready.wait(), DEADLINE)
        yield Running(worker, stop, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, GRACE + DEADLINE)


async def create_unpublished(
    engine: AsyncEngine, marks: Path
) -> tuple[list[uuid.UUID], list[outbox.Pending]]:
    """Jobs that append their label to ``marks`` when they run; their messages not yet sent."""
    new = [
        store.NewJob(name="tests.record", queue="default", args=[str(marks), f"job{n}"], kwargs={})
        for n in range(JOBS)
    ]
    async with engine.begin() as conn:
        pending = await store.create_jobs(conn, new, await db_now(conn))
    return [j.id for j in new], pending


async def publish(settings: Settings, engine: AsyncEngine, pending: list[outbox.Pending]) -> None:
    connection = await connect(settings.amqp_url, name="test-publish")
    try:
        publisher = Publisher(connection, Topology(settings.broker_namespace), 5)
        async with engine.begin() as conn:
            assert await outbox.publish_pending(conn, publisher, pending) == len(pending)
    finally:
        await connection.close()


async def claims_blocked_by(engine: AsyncEngine, holder: int) -> int:
    """Backends of this database waiting on a lock the ``holder`` backend holds, in the
    worker's claim statement (it locks the rows FOR NO KEY UPDATE)."""
    async with engine.connect() as conn:
        count = await conn.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND state = 'active' "
                "AND wait_event_type = 'Lock' AND :holder = ANY(pg_blocking_pids(pid)) "
                "AND query LIKE '%FOR NO KEY UPDATE%'"
            ),
            {"holder": holder},
        )
    return int(count or 0)


async def history(engine: AsyncEngine, job_id: uuid.UUID) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await store.get_history(conn, job_id)
    return [(str(r.state), str(r.reason or "")) for r in rows]


async def outbox_entries(engine: AsyncEngine, ids: list[uuid.UUID]) -> int:
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(tables.outbox)
        count = await conn.scalar(query.where(tables.outbox.c.job_id.in_(ids)))
    return int(count or 0)


def worker_complaints(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the worker logged as a warning or worse (deliveries left unsettled at close, a
    hand-back that failed)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("orchestrator_worker") and r.levelno >= logging.WARNING
    ]


@pytest.mark.timeout(180)
async def test_jobs_claimed_while_the_worker_stops_are_handed_back_unstarted(
    make_settings: Callable[..., Settings],
    postgres_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="orchestrator_worker")
    settings = make_settings(postgres_url, worker_ops_port=0, worker_concurrency=CONCURRENCY)
    engine = create_engine(postgres_url)
    marks = tmp_path / "marks.txt"
    try:
        async with running(settings) as first:
            worker = first.worker
            ids, pending = await create_unpublished(engine, marks)
            async with engine.connect() as locker:
                # The test holds the jobs' rows: the worker's claim of them waits for the lock.
                await locker.begin()
                holder = int(await locker.scalar(sa.text("SELECT pg_backend_pid()")) or 0)
                rows = await locker.execute(
                    sa.text("SELECT id FROM jobs WHERE id = ANY(:ids) FOR UPDATE"), {"ids": ids}
                )
                assert len(rows.all()) == JOBS
                try:
                    await publish(settings, engine, pending)

                    async def claim_in_flight() -> bool:
                        # Every delivery was taken (submitted to the claims rounds), and the
                        # claim statement waits for the test's lock.
                        return worker.intake.unsettled == JOBS and (
                            await claims_blocked_by(engine, holder) > 0
                        )

                    await until(claim_in_flight, "the worker's claim blocked on the locked rows")
                    first.stop.set()

                    async def stopping() -> bool:
                        return worker.stopping

                    await until(stopping, "the worker stopping")
                    # Still blocked: the claim commits after the worker began to stop.
                    assert await claims_blocked_by(engine, holder) > 0
                    assert not first.task.done()
                finally:
                    await locker.rollback()
            # The stopping worker exits on its own: none of the jobs was started (none is left
            # at the end of the grace), every delivery was settled, nothing went wrong.
            await asyncio.wait_for(first.task, DEADLINE)
        assert first.task.exception() is None
        assert worker.abandoned == 0
        assert worker.running == {}
        assert worker_complaints(caplog) == []
        claimed = started_by(worker.info.id)
        for job_id in ids:
            assert await history(engine, job_id) == [
                ("Enqueued", "Created"),
                ("Processing", claimed),
                ("Enqueued", UNSTARTED),
            ], job_id
        assert not marks.exists(), f"a job ran on the stopping worker: {marks.read_text()}"
        # The hand-back's messages were sent before the worker closed its connection.
        assert await outbox_entries(engine, ids) == 0

        # A second worker runs each job, once.
        async with running(settings) as second:
            done = await wait_for_states(settings, ids, lambda s: s in ("Succeeded", "Failed"))
        assert [done[j].state for j in ids] == ["Succeeded"] * JOBS
        assert sorted(marks.read_text().splitlines()) == [f"job{n}" for n in range(JOBS)]
        for job_id in ids:
            assert [state for state, _ in await history(engine, job_id)] == [
                "Enqueued",
                "Processing",
                "Enqueued",
                "Processing",
                "Succeeded",
            ], job_id
        assert second.worker.abandoned == 0
        assert worker_complaints(caplog) == []
    finally:
        await engine.dispose()
