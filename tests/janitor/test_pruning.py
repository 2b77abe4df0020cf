"""The janitor's removals, on both stores: by database time, in bounded batches, and only what
has expired (Failed jobs stay unless configured)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, dead_letters, store
from orchestrator.lifecycle import Change, State
from orchestrator.store import tables
from orchestrator_janitor import pruning
from orchestrator_janitor.expiry import expire_failed_jobs, expire_jobs

DAY = timedelta(days=1)
TRANSITIONS = composition.transitions(DAY)
HOUR = timedelta(hours=1)
_batches = tables.batches
_counters = tables.counters
_dead_letters = tables.dead_letters


async def _jobs_in(engine: AsyncEngine, target: State, at: datetime, n: int) -> list[uuid.UUID]:
    new = [store.NewJob(name="x", queue="default", args=[], kwargs={}) for _ in range(n)]
    async with engine.begin() as conn:
        await store.create_jobs(conn, new, at)
        for source, step in ((State.ENQUEUED, State.PROCESSING), (State.PROCESSING, target)):
            await TRANSITIONS.move(
                conn,
                [j.id for j in new],
                expected={source},
                target=step,
                change=Change("test"),
                now=at,
            )
    return [j.id for j in new]


async def _count(engine: AsyncEngine, table: sa.Table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def test_expired_final_jobs_go_in_batches_and_failed_ones_stay(engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    old = await _jobs_in(engine, State.SUCCEEDED, now - 2 * DAY, 5)
    await _jobs_in(engine, State.DELETED, now - 2 * DAY, 2)
    fresh = await _jobs_in(engine, State.SUCCEEDED, now, 1)
    failed = await _jobs_in(engine, State.FAILED, now - 10 * DAY, 3)
    assert await expire_jobs(engine, TRANSITIONS, batch=4) == 4
    assert await expire_jobs(engine, TRANSITIONS, batch=4) == 3
    assert await expire_jobs(engine, TRANSITIONS, batch=4) == 0
    async with engine.connect() as conn:
        left = set((await conn.execute(sa.select(store.jobs_table.c.id))).scalars())
        history = (await conn.execute(sa.select(store.history_table.c.job_id))).scalars().all()
    assert left == {*fresh, *failed} and not set(old) & set(history)
    # Delete-on-exhaustion, when configured: Failed jobs older than the setting go too.
    assert await expire_failed_jobs(engine, TRANSITIONS, batch=10, failed_for=30 * DAY) == 0
    assert await expire_failed_jobs(engine, TRANSITIONS, batch=2, failed_for=7 * DAY) == 2
    assert await expire_failed_jobs(engine, TRANSITIONS, batch=2, failed_for=7 * DAY) == 1


async def test_dead_letters_batches_and_counters_are_pruned_by_age(engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    letters = [
        dead_letters.Letter(f"garbage {i}".encode(), {}, f"m{i}", "default") for i in range(3)
    ]
    async with engine.begin() as conn:
        old = now - 8 * DAY
        await dead_letters.record(conn, letters[:2], old, body_limit=100, transitions=TRANSITIONS)
        await dead_letters.record(conn, letters[2:], now, body_limit=100, transitions=TRANSITIONS)
        await conn.execute(
            sa.insert(_batches),
            [
                {
                    "id": uuid.uuid4(),
                    "total": 1,
                    "ended": 1,
                    "created_at": now - 3 * DAY,
                    "completed_at": now - 2 * DAY,
                },
                {
                    "id": uuid.uuid4(),
                    "total": 1,
                    "ended": 0,
                    "created_at": now - 3 * DAY,
                    "completed_at": None,
                },
                {
                    "id": uuid.uuid4(),
                    "total": 1,
                    "ended": 1,
                    "created_at": now,
                    "completed_at": now,
                },
            ],
        )
        hour = now.replace(minute=0, second=0, microsecond=0)
        await conn.execute(
            sa.insert(_counters),
            [{"hour": hour - k * DAY, "state": "Succeeded", "count": 1} for k in (0, 29, 31, 40)],
        )
    assert await pruning.prune_dead_letters(engine, older_than=7 * DAY, batch=1) == 1
    assert await pruning.prune_dead_letters(engine, older_than=7 * DAY, batch=10) == 1
    assert await _count(engine, _dead_letters) == 1
    assert await pruning.prune_batches(engine, older_than=DAY, batch=10) == 1
    assert await _count(engine, _batches) == 2  # not completed, or completed recently
    assert await pruning.prune_counters(engine, older_than=30 * DAY, batch=10) == 2
    assert await _count(engine, _counters) == 2


async def test_several_janitors_at_once_remove_each_job_once(engine: AsyncEngine) -> None:
    await _jobs_in(engine, State.SUCCEEDED, datetime.now(UTC) - 2 * DAY, 300)
    removed = await asyncio.gather(
        *(expire_jobs(engine, TRANSITIONS, batch=50) for _ in range(4))
    )
    while sum(removed) < 300:
        more = await expire_jobs(engine, TRANSITIONS, batch=50)
        assert more > 0
        removed.append(more)
    assert await _count(engine, store.jobs_table) == 0


