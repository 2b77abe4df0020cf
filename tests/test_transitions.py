"""Transitions on a real store: compare-and-set with history, per-row guards, expiry, counting
(the transition table itself is a unit test: tests/unit/test_lifecycle.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from orchestrator import composition, store
from orchestrator.db import db_now
from orchestrator.errors import IllegalTransitionError
from orchestrator.lifecycle import Change, RowChange, State
from orchestrator.store import counters, tables

S = State
HOUR = timedelta(hours=1)


async def _jobs(engine, n: int) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    new = [store.NewJob(name="x", queue="default", args=[i], kwargs={}) for i in range(n)]
    async with engine.begin() as conn:
        await store.create_jobs(conn, new, await db_now(conn))
    return [j.id for j in new]


async def test_move_is_a_compare_and_set_with_history(engine) -> None:  # type: ignore[no-untyped-def]
    ids = await _jobs(engine, 3)
    async with engine.begin() as conn:
        now = await db_now(conn)
        moved = await composition.transitions(HOUR).move(
            conn,
            ids[:2],
            expected={S.ENQUEUED},
            target=S.PROCESSING,
            change=Change("claimed", values={"attempt": 1}),
            now=now,
        )
        assert {r.id for r in moved} == set(ids[:2])
        # The same move again finds nothing in the expected state: nothing changes.
        again = await composition.transitions(HOUR).move(
            conn,
            ids[:2],
            expected={S.ENQUEUED},
            target=S.PROCESSING,
            change=Change("claimed twice"),
            now=now,
        )
        assert again == []
        history = await store.get_history(conn, ids[0])
        assert [(h.state, h.reason) for h in history] == [
            ("Enqueued", "Created"),
            ("Processing", "claimed"),
        ]
        untouched = await store.get_job(conn, ids[2])
        assert untouched.state == "Enqueued"


async def test_move_each_guards_each_row_and_sets_expiry(engine) -> None:  # type: ignore[no-untyped-def]
    ids = await _jobs(engine, 4)
    async with engine.begin() as conn:
        now = await db_now(conn)
        await composition.transitions(HOUR).move(
            conn,
            ids,
            expected={S.ENQUEUED},
            target=S.PROCESSING,
            change=Change("claimed", values={"attempt": 1, "worker_id": "w1"}),
            now=now,
        )
        await conn.execute(
            sa.update(store.jobs_table)
            .where(store.jobs_table.c.id == ids[3])
            .values(expire_after_seconds=60.0)
        )
        items = [
            RowChange(
                job_id,
                Change("done", values={"result": {"n": i}, "finished_at": now}),
                guard={"attempt": 1, "worker_id": "w1" if i != 2 else "stale-worker"},
            )
            for i, job_id in enumerate(ids)
        ]
        moved = await composition.transitions(HOUR).move_each(
            conn, items, expected={S.PROCESSING}, target=S.SUCCEEDED, now=now,
        )
        assert set(moved) == {ids[0], ids[1], ids[3]}
        rows = {r.id: r for r in await conn.execute(sa.select(store.jobs_table))}
        assert rows[ids[0]].result == {"n": 0} and rows[ids[0]].state == "Succeeded"
        assert rows[ids[0]].expires_at == now + HOUR
        assert rows[ids[3]].expires_at == now + timedelta(seconds=60)
        assert rows[ids[2]].state == "Processing" and rows[ids[2]].result is None
        assert rows[ids[0]].lease_until is None


async def test_final_states_are_counted_per_hour(engine) -> None:  # type: ignore[no-untyped-def]
    ids = await _jobs(engine, 3)
    async with engine.begin() as conn:
        now = await db_now(conn)
        await composition.transitions(HOUR).move(
            conn,
            ids,
            expected={S.ENQUEUED},
            target=S.DELETED,
            change=Change("bye"),
            now=now,
        )
        rows = (await conn.execute(sa.select(tables.counters))).all()
        transitions = composition.transitions(HOUR)
        again, bye = Change("again"), Change("bye again")
        await transitions.move(
            conn, ids[:1], expected={S.DELETED}, target=S.ENQUEUED, change=again, now=now
        )
        await transitions.move(
            conn, ids[:1], expected={S.ENQUEUED}, target=S.DELETED, change=bye, now=now
        )
        hour = now.replace(minute=0, second=0, microsecond=0)
        totals = await counters.per_hour(conn, hour)
    assert [(r.state, r.count) for r in rows] == [("Deleted", 3)]
    assert totals == {(hour, "Deleted"): 4}


async def test_illegal_move_raises_before_touching_the_store(engine) -> None:  # type: ignore[no-untyped-def]
    ids = await _jobs(engine, 1)
    async with engine.begin() as conn:
        with pytest.raises(IllegalTransitionError):
            await composition.transitions(HOUR).move(
                conn,
                ids,
                expected={S.ENQUEUED},
                target=S.SUCCEEDED,
                change=Change("skip"),
                now=await db_now(conn),
            )
