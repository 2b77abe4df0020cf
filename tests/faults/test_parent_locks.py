"""An enqueue of continuations never waits for a parent's lock while it holds another.

The cycle this guards against (found by tests/faults/test_lock_order.py): a continuation names
two parents, A (``Awaiting`` a job P) and B, with A < B. A worker round holds P and B; the
enqueue share-locks A and waits for B; the round ends P, whose ending moves its child A, and
waits for the enqueue. PostgreSQL then breaks the deadlock by failing one of them.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, store
from orchestrator.db import create_engine, db_now
from orchestrator.lifecycle import Change, State
from orchestrator.store.creation import parent_states

TRANSITIONS = composition.transitions(timedelta(hours=1))


def _job(job_id: uuid.UUID, **values: object) -> store.NewJob:
    return store.NewJob(name="parents", queue="default", args=[], kwargs={}, id=job_id, **values)


async def _jobs(engine: AsyncEngine) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """P and B Processing, A Awaiting P; A sorts before B."""
    grandparent = uuid.uuid4()
    awaiting = uuid.UUID(int=uuid.uuid4().int >> 8)
    processing = uuid.UUID(int=uuid.uuid4().int | (0xFF << 120))
    new = [
        _job(grandparent),
        _job(processing),
        _job(awaiting, state=State.AWAITING, parent_id=grandparent, continue_on="finished"),
    ]
    async with engine.begin() as conn:
        await store.create_jobs(conn, new, await db_now(conn))
        await conn.execute(
            sa.update(store.jobs_table)
            .where(store.jobs_table.c.id.in_([grandparent, processing]))
            .values(state=State.PROCESSING.value)
        )
    return grandparent, awaiting, processing


async def _enqueue_after(
    engine: AsyncEngine, parents: set[uuid.UUID], backend: asyncio.Future[int]
) -> None:
    """The enqueue's store side: lock the parents, insert a continuation of each."""
    async with engine.begin() as conn:
        backend.set_result(int(await conn.scalar(sa.text("SELECT pg_backend_pid()"))))
        states = await parent_states(conn, parents)
        children = [
            _job(uuid.uuid4(), state=State.AWAITING, parent_id=p, continue_on="finished")
            for p in states
        ]
        await store.create_jobs(conn, children, await db_now(conn))


async def _blocked_or_gave_back(engine: AsyncEngine, pid: int) -> None:
    """Until the enqueue waits for a lock (holding its other parent) or has given its locks
    back after finding a parent held."""
    query = sa.text("SELECT wait_event_type, query FROM pg_stat_activity WHERE pid = :pid")
    while True:
        async with engine.connect() as conn:
            row = (await conn.execute(query, {"pid": pid})).one()
        if row.wait_event_type == "Lock" or row.query.startswith("ROLLBACK TO SAVEPOINT"):
            return
        await asyncio.sleep(0.01)


async def test_an_enqueue_holding_an_awaiting_parent_never_waits_for_another(
    postgres_url: str,
) -> None:
    round_engine, enqueue_engine, watcher = (create_engine(postgres_url) for _ in range(3))
    try:
        grandparent, awaiting, processing = await _jobs(round_engine)
        async with round_engine.begin() as conn:
            await TRANSITIONS.lock(conn, [grandparent, processing], {State.PROCESSING})
            backend: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            enqueue = asyncio.create_task(
                _enqueue_after(enqueue_engine, {awaiting, processing}, backend)
            )
            await _blocked_or_gave_back(watcher, await backend)
            # The round ends P: its ending locks P's Awaiting child A.
            moved = await TRANSITIONS.move(
                conn,
                [grandparent],
                expected={State.PROCESSING},
                target=State.SUCCEEDED,
                change=Change("Succeeded"),
                now=await db_now(conn),
            )
            assert [row.id for row in moved] == [grandparent]
        await asyncio.wait_for(enqueue, timeout=30)
        async with watcher.connect() as conn:
            state = await conn.scalar(
                sa.select(store.jobs_table.c.state).where(store.jobs_table.c.id == awaiting)
            )
            children = await conn.scalar(
                sa.select(sa.func.count()).where(
                    store.jobs_table.c.parent_id.in_([awaiting, processing])
                )
            )
        assert state == State.ENQUEUED.value
        assert children == 2
    finally:
        for engine in (round_engine, enqueue_engine, watcher):
            await engine.dispose()
