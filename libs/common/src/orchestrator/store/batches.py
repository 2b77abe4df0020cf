"""Reading batches: the list, one batch, its members and their progress per state. A batch's
row is written by :mod:`orchestrator.store.creation`, its progress by the endings of its members
(:mod:`orchestrator.store.continuations`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.lifecycle import State
from orchestrator.store.tables import JOB_LIST_COLUMNS, Row, batches, jobs


async def newest(
    conn: AsyncConnection, *, limit: int, after: tuple[datetime, uuid.UUID] | None = None
) -> list[Row]:
    """Up to ``limit`` batches, newest first (ties by id), keyset-paged: those before the
    ``after`` (created_at, id)."""
    query = sa.select(batches)
    if after is not None:
        query = query.where(sa.tuple_(batches.c.created_at, batches.c.id) < sa.tuple_(*after))
    query = query.order_by(batches.c.created_at.desc(), batches.c.id.desc()).limit(limit)
    return list((await conn.execute(query)).all())


async def get(conn: AsyncConnection, batch_id: uuid.UUID) -> Row | None:
    """The batch's row, or None (a completed batch is removed after the jobs' retention)."""
    return (await conn.execute(sa.select(batches).where(batches.c.id == batch_id))).first()


async def progress(
    conn: AsyncConnection, batch_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """Per batch, its members per state (partial index ``ix_jobs_batch``)."""
    if not batch_ids:
        return {}
    query = (
        sa.select(jobs.c.batch_id, jobs.c.state, sa.func.count())
        .where(jobs.c.batch_id.in_(batch_ids))
        .group_by(jobs.c.batch_id, jobs.c.state)
    )
    counts: dict[uuid.UUID, dict[str, int]] = {batch_id: {} for batch_id in batch_ids}
    for batch_id, state, count in await conn.execute(query):
        counts[batch_id][state] = int(count)
    return counts


async def members_per_state(conn: AsyncConnection, batch_id: uuid.UUID) -> dict[str, int]:
    """The batch's members per state."""
    query = (
        sa.select(jobs.c.state, sa.func.count())
        .where(jobs.c.batch_id == batch_id)
        .group_by(jobs.c.state)
    )
    return {str(state): int(n) for state, n in (await conn.execute(query)).all()}


async def members(
    conn: AsyncConnection,
    batch_id: uuid.UUID,
    *,
    state: State | None,
    after: Sequence[Any] | None,
    limit: int,
) -> list[Row]:
    """Up to ``limit`` of the batch's members (list columns: no result) in creation order, ties
    by id, after the (created_at, id) ``after``; only those in ``state`` if given. The partial
    index ``ix_jobs_batch`` finds them, so a page reads the batch's rows only."""
    key = (jobs.c.created_at, jobs.c.id)
    query = sa.select(*JOB_LIST_COLUMNS).where(jobs.c.batch_id == batch_id)
    if state is not None:
        query = query.where(jobs.c.state == state.value)
    if after is not None:
        query = query.where(sa.tuple_(*key) > sa.tuple_(*after))
    return list((await conn.execute(query.order_by(*key).limit(limit))).all())
