"""What follows when jobs end, inside the transaction that ends them (called by ``states``).

A job has *ended* when it is ``Succeeded``, ``Deleted`` or ``Failed`` (a job with a retry left
goes to ``Scheduled``, never to ``Failed``). Its ``Awaiting`` children then move:

============  ==========================  ==========================
parent        ``continue_on="succeeded"``  ``continue_on="finished"``
============  ==========================  ==========================
Succeeded     Enqueued                     Enqueued
Failed        stays Awaiting               Enqueued
Deleted       Deleted (naming the parent)  Enqueued
============  ==========================  ==========================

A deleted child ends in turn, so deletion runs down a chain of any length (iteratively, not by
recursion). A batch member's first ending sets ``first_ended_at`` and counts in
``batches.ended``; the change that brings ``ended`` to ``total`` enqueues the batch's
continuation, once: ``first_ended_at`` is set only once, and ``ended`` only grows.

This runs as the state machine's first built-in applied hook (:data:`FOLLOW`), so it follows
every change whoever makes it; the children it moves pass the caller's filters on (their
``applied`` hooks see a continuation released), without an election: a continuation's fate
follows its parent's.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import outbox, states
from orchestrator.db import one_of
from orchestrator.models import Batch, Job

if TYPE_CHECKING:
    from orchestrator.filters import Filters

ENDED: Final = frozenset({"Succeeded", "Failed", "Deleted"})
#: ``continue_on`` of a batch's continuation (it has no parent job; ``batches`` points at it).
BATCH: Final = "batch"

_jobs = Job.__table__  # type: ignore[attr-defined]
_batches = Batch.__table__  # type: ignore[attr-defined]
#: Set while this module moves children itself, so those moves do not follow on recursively.
_following: ContextVar[bool] = ContextVar("orchestrator_endings_following", default=False)


class FollowEndings:
    """The built-in applied hook: what follows the moved jobs' ending (see :func:`follow`)."""

    async def applied(self, context: states.Applied) -> None:
        context.pending += await follow(
            context.conn,
            context.rows,
            context.target,
            context.now,
            context.retention,
            context.filters,
        )


FOLLOW: Final = FollowEndings()


async def follow(
    conn: AsyncConnection,
    rows: Sequence[sa.Row[Any]],
    target: states.State,
    now: datetime,
    retention: timedelta,
    filters: Filters | None = None,
) -> list[outbox.Pending]:
    """Release the continuations of ``rows`` (just moved to ``target``) and count batch
    members; returns the outbox entries of every job this enqueued."""
    if target.value not in ENDED or _following.get():
        return []
    pending: list[outbox.Pending] = []
    frontier: list[tuple[uuid.UUID, uuid.UUID | None]] = [(r.id, r.batch_id) for r in rows]
    state = target
    while frontier:
        members = [job_id for job_id, batch_id in frontier if batch_id is not None]
        pending += await _batch_progress(conn, members, now, retention, filters)
        children = await _awaiting_children(conn, [job_id for job_id, _ in frontier])
        release = [c for c in children if _released(state, c.continue_on)]
        reason = f"Parent {{}} {state.value}"
        pending += await _enqueue(conn, release, reason, now, retention, filters)
        doomed = [c for c in children if _doomed(state, c.continue_on)]
        deleted = set(await _move(conn, doomed, "Parent {} was deleted", now, retention, filters))
        frontier = [(c.id, c.batch_id) for c in doomed if c.id in deleted]
        state = states.State.DELETED
    return pending


def _released(parent: states.State, continue_on: str | None) -> bool:
    if parent is states.State.SUCCEEDED:
        return True
    return continue_on == "finished"


def _doomed(parent: states.State, continue_on: str | None) -> bool:
    return parent is states.State.DELETED and continue_on != "finished"


async def _awaiting_children(
    conn: AsyncConnection, parent_ids: Sequence[uuid.UUID]
) -> list[sa.Row[Any]]:
    query = sa.select(
        _jobs.c.id,
        _jobs.c.parent_id,
        _jobs.c.continue_on,
        _jobs.c.batch_id,
        _jobs.c.queue,
        _jobs.c.trace_context,
    ).where(
        one_of(conn, _jobs.c.parent_id, parent_ids),
        _jobs.c.state == states.State.AWAITING.value,
    )
    rows: list[sa.Row[Any]] = list((await conn.execute(query)).all())  # type: ignore[arg-type]
    return rows


async def _move(
    conn: AsyncConnection,
    children: Sequence[sa.Row[Any]],
    reason: str,
    now: datetime,
    retention: timedelta,
    filters: Filters | None,
    target: str = "Deleted",
) -> list[uuid.UUID]:
    """Move Awaiting children; each history row names the child's own parent. The move does
    not follow on by itself for Deleted here: :func:`follow`'s loop does, one level a turn."""
    if not children:
        return []
    items = [
        states.RowChange(c.id, states.Change(reason.format(c.parent_id), data=_parent(c)))
        for c in children
    ]
    return await _move_quietly(conn, items, states.State(target), now, retention, filters)


async def _move_quietly(
    conn: AsyncConnection,
    items: Sequence[states.RowChange],
    target: states.State,
    now: datetime,
    retention: timedelta,
    filters: Filters | None,
) -> list[uuid.UUID]:
    token = _following.set(True)
    try:
        return list(
            await states.move_each(
                conn,
                items,
                expected={states.State.AWAITING},
                target=target,
                now=now,
                retention=retention,
                filters=filters,
                elect=False,
            )
        )
    finally:
        _following.reset(token)


def _parent(child: sa.Row[Any]) -> dict[str, Any] | None:
    return {"parent": str(child.parent_id)} if child.parent_id is not None else None


async def _enqueue(
    conn: AsyncConnection,
    jobs: Sequence[sa.Row[Any]],
    reason: str,
    now: datetime,
    retention: timedelta,
    filters: Filters | None,
) -> list[outbox.Pending]:
    moved = set(await _move(conn, jobs, reason, now, retention, filters, "Enqueued"))
    return await _publications(conn, [j for j in jobs if j.id in moved], now)


async def _publications(
    conn: AsyncConnection, jobs: Sequence[sa.Row[Any]], now: datetime
) -> list[outbox.Pending]:
    publications = [outbox.Publication(j.id, j.queue, j.trace_context or {}) for j in jobs]
    return await outbox.add(conn, publications, now)


async def _batch_progress(
    conn: AsyncConnection,
    members: Sequence[uuid.UUID],
    now: datetime,
    retention: timedelta,
    filters: Filters | None,
) -> list[outbox.Pending]:
    """Count members ending for the first time; enqueue the continuation of completed batches."""
    if not members:
        return []
    first = await conn.execute(
        sa.update(_jobs)
        .where(_jobs.c.id.in_(list(members)), _jobs.c.first_ended_at.is_(None))
        .values(first_ended_at=now)
        .returning(_jobs.c.batch_id)
    )
    counts = Counter(row.batch_id for row in first)
    continuations: dict[uuid.UUID, uuid.UUID] = {}
    for batch_id in sorted(counts, key=str):  # one lock order, so two endings never deadlock
        added = counts[batch_id]
        row = (
            await conn.execute(
                sa.update(_batches)
                .where(_batches.c.id == batch_id)
                .values(ended=_batches.c.ended + added)
                .returning(_batches.c.ended, _batches.c.total, _batches.c.continuation_id)
            )
        ).one()
        if row.ended >= row.total > row.ended - added:
            await conn.execute(
                sa.update(_batches).where(_batches.c.id == batch_id).values(completed_at=now)
            )
            if row.continuation_id is not None:
                continuations[row.continuation_id] = batch_id
    return await _release_batch_continuations(conn, continuations, now, retention, filters)


async def _release_batch_continuations(
    conn: AsyncConnection,
    of: Mapping[uuid.UUID, uuid.UUID],
    now: datetime,
    retention: timedelta,
    filters: Filters | None,
) -> list[outbox.Pending]:
    """Enqueue each completed batch's continuation (``of``: continuation id -> batch id)."""
    if not of:
        return []
    items = [
        states.RowChange(
            job_id, states.Change(f"Batch {batch_id} completed", data={"batch": str(batch_id)})
        )
        for job_id, batch_id in of.items()
    ]
    moved = set(await _move_quietly(conn, items, states.State.ENQUEUED, now, retention, filters))
    jobs = await conn.execute(
        sa.select(_jobs.c.id, _jobs.c.queue, _jobs.c.trace_context).where(
            _jobs.c.id.in_(list(moved))
        )
    )
    return await _publications(conn, list(jobs), now)
