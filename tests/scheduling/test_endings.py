"""What a job's ending sets off, in the same transaction: continuations and batch completion.

On PostgreSQL and SQLite, through the state machine itself (every caller goes through it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, lifecycle, store
from orchestrator.lifecycle import BATCH, Change, State
from orchestrator.models import Batch, OutboxEntry
from orchestrator.transitions import Moved

S = State
HOUR = timedelta(hours=1)
#: A controllable clock: every transition gets an explicit time.
T0 = datetime(2030, 1, 1, tzinfo=UTC)
_outbox = OutboxEntry.__table__  # type: ignore[attr-defined]
_batches = Batch.__table__  # type: ignore[attr-defined]


def _job(state: State = S.ENQUEUED, **fields: object) -> store.NewJob:
    return store.NewJob(name="x", queue="default", args=[], kwargs={}, state=state, **fields)  # type: ignore[arg-type]


async def _create(engine: AsyncEngine, *jobs: store.NewJob) -> None:
    async with engine.begin() as conn:
        await store.create_jobs(conn, list(jobs), T0)


def _child(parent: store.NewJob, on: str = "succeeded") -> store.NewJob:
    return _job(S.AWAITING, parent_id=parent.id, continue_on=on)


async def _end(
    engine: AsyncEngine, job_id: uuid.UUID, target: State, at: datetime = T0
) -> Moved[sa.Row]:  # type: ignore[type-arg]
    async with engine.begin() as conn:
        return await composition.transitions(HOUR).move(
            conn,
            [job_id],
            expected=[s for s in State if s is not target and lifecycle.is_allowed(s, target)],
            target=target,
            change=Change("test"),
            now=at,
        )


async def _state(engine: AsyncEngine, job_id: uuid.UUID) -> str:
    async with engine.connect() as conn:
        return str((await store.get_job(conn, job_id)).state)


async def _history(engine: AsyncEngine, job_id: uuid.UUID) -> list[tuple[str, str | None]]:
    async with engine.connect() as conn:
        return [(h.state, h.reason) for h in await store.get_history(conn, job_id)]


async def _outbox_jobs(engine: AsyncEngine) -> list[uuid.UUID]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(_outbox.c.job_id))).scalars())


@pytest.mark.parametrize(
    ("parent_end", "on", "expected"),
    [
        (S.SUCCEEDED, "succeeded", S.ENQUEUED),
        (S.SUCCEEDED, "finished", S.ENQUEUED),
        (S.FAILED, "succeeded", S.AWAITING),
        (S.FAILED, "finished", S.ENQUEUED),
        (S.DELETED, "succeeded", S.DELETED),
        (S.DELETED, "finished", S.ENQUEUED),
    ],
)
async def test_continuation_conditions(
    engine: AsyncEngine, parent_end: State, on: str, expected: State
) -> None:
    parent = _job(S.ENQUEUED)
    children = [_child(parent, on), _child(parent, on)]  # several children per parent
    await _create(engine, parent, *children)
    if parent_end is not S.DELETED:
        await _end(engine, parent.id, S.PROCESSING)
    moved = await _end(engine, parent.id, parent_end)
    for child in children:
        assert await _state(engine, child.id) == expected.value
    enqueued = [c.id for c in children] if expected is S.ENQUEUED else []
    # The outbox entries were written in the same transaction and returned for the fast path.
    assert sorted(p.message.job_id for p in moved.pending) == sorted(enqueued)
    assert sorted(await _outbox_jobs(engine)) == sorted([parent.id, *enqueued])
    if expected is not S.AWAITING:
        state, reason = (await _history(engine, children[0].id))[-1]
        assert state == expected.value and str(parent.id) in (reason or "")


async def test_failed_parent_requeued_then_succeeding_releases_waiting_child(
    engine: AsyncEngine,
) -> None:
    parent = _job()
    child = _child(parent)
    await _create(engine, parent, child)
    await _end(engine, parent.id, S.PROCESSING)
    await _end(engine, parent.id, S.FAILED)
    assert await _state(engine, child.id) == "Awaiting"
    await _end(engine, parent.id, S.ENQUEUED)  # a person requeues it
    await _end(engine, parent.id, S.PROCESSING)
    await _end(engine, parent.id, S.SUCCEEDED)
    assert await _state(engine, child.id) == "Enqueued"


async def test_chain_advances_one_link_per_ending(engine: AsyncEngine) -> None:
    chain = [_job()]
    for _ in range(5):
        chain.append(_child(chain[-1]))
    await _create(engine, *chain)
    for index, link in enumerate(chain[:-1]):
        await _end(engine, link.id, S.PROCESSING)
        await _end(engine, link.id, S.SUCCEEDED)
        assert await _state(engine, chain[index + 1].id) == "Enqueued"
        if index + 2 < len(chain):
            assert await _state(engine, chain[index + 2].id) == "Awaiting"


async def test_deleting_runs_down_a_long_chain_and_stops_at_finished(
    engine: AsyncEngine,
) -> None:
    chain = [_job()]
    for _ in range(300):  # deeper than any recursion would go
        chain.append(_child(chain[-1]))
    finished = _child(chain[-1], "finished")
    after_finished = _child(finished)
    await _create(engine, *chain, finished, after_finished)
    moved = await _end(engine, chain[0].id, S.DELETED)
    for link in chain:
        assert await _state(engine, link.id) == "Deleted"
    assert await _history(engine, chain[7].id) == [
        ("Awaiting", "Created"),
        ("Deleted", f"Parent {chain[6].id} was deleted"),
    ]
    assert await _state(engine, finished.id) == "Enqueued"
    assert [p.message.job_id for p in moved.pending] == [finished.id]
    assert await _state(engine, after_finished.id) == "Awaiting"


async def _batch(engine: AsyncEngine, size: int) -> tuple[uuid.UUID, list[uuid.UUID], uuid.UUID]:
    batch_id = uuid.uuid4()
    members = [_job(batch_id=batch_id) for _ in range(size)]
    continuation = _job(S.AWAITING, continue_on=BATCH)
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(_batches).values(
                id=batch_id, total=size, ended=0, continuation_id=continuation.id, created_at=T0
            )
        )
        await store.create_jobs(conn, [*members, continuation], T0)
    return batch_id, [m.id for m in members], continuation.id


async def test_batch_continuation_fires_once_after_mixed_outcomes(engine: AsyncEngine) -> None:
    batch_id, members, continuation = await _batch(engine, 4)
    for member, outcome in zip(members[:3], (S.SUCCEEDED, S.FAILED, S.SUCCEEDED), strict=True):
        await _end(engine, member, S.PROCESSING)
        await _end(engine, member, outcome)
        assert await _state(engine, continuation) == "Awaiting"
    # A member that failed and is requeued, then ends again, counts only once.
    await _end(engine, members[1], S.ENQUEUED)
    await _end(engine, members[1], S.PROCESSING)
    await _end(engine, members[1], S.SUCCEEDED)
    assert await _state(engine, continuation) == "Awaiting"
    moved = await _end(engine, members[3], S.DELETED)
    assert [p.message.job_id for p in moved.pending] == [continuation]
    assert await _history(engine, continuation) == [
        ("Awaiting", "Created"),
        ("Enqueued", f"Batch {batch_id} completed"),
    ]
    # Requeue a member after completion: it runs again, the continuation does not.
    await _end(engine, members[0], S.ENQUEUED)
    await _end(engine, members[0], S.PROCESSING)
    again = await _end(engine, members[0], S.SUCCEEDED)
    assert again.pending == []
    assert len(await _history(engine, continuation)) == 2
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(_batches).where(_batches.c.id == batch_id))).one()
    assert (row.total, row.ended) == (4, 4) and row.completed_at == T0


async def test_batch_members_ending_in_one_statement_fire_once(engine: AsyncEngine) -> None:
    _, members, continuation = await _batch(engine, 3)
    async with engine.begin() as conn:
        moved = await composition.transitions(HOUR).move(
            conn,
            members,
            expected={S.ENQUEUED},
            target=S.DELETED,
            change=Change("bulk delete"),
            now=T0,
        )
    assert [p.message.job_id for p in moved.pending] == [continuation]
    assert await _state(engine, continuation) == "Enqueued"
