"""What follows an ending, as queries: Awaiting children and batch progress (for
:mod:`orchestrator.endings`)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import is_postgres
from orchestrator.lifecycle import State
from orchestrator.store.tables import Row, batches, jobs


async def awaiting_children(conn: AsyncConnection, parent_ids: Sequence[uuid.UUID]) -> list[Row]:
    """The Awaiting continuations of the listed parents, with what their moves need."""
    if is_postgres(conn):  # every ending asks: one statement built once, an array parameter
        params = {"parents": list(parent_ids)}
        return list((await conn.execute(_AWAITING_CHILDREN, params)).all())
    query = _AWAITING.where(jobs.c.parent_id.in_(list(parent_ids)))
    return list((await conn.execute(query)).all())


_AWAITING = sa.select(
    jobs.c.id,
    jobs.c.parent_id,
    jobs.c.continue_on,
    jobs.c.batch_id,
    jobs.c.queue,
    jobs.c.trace_context,
).where(jobs.c.state == State.AWAITING.value)
_AWAITING_CHILDREN = _AWAITING.where(
    jobs.c.parent_id == sa.any_(sa.cast(sa.bindparam("parents"), ARRAY(sa.Uuid())))
)


async def mark_first_endings(
    conn: AsyncConnection, members: Sequence[uuid.UUID], now: datetime
) -> Counter[uuid.UUID]:
    """Stamp ``first_ended_at`` on the batch members ending for the first time; how many per
    batch (a requeued member that ends again is not counted twice)."""
    first = await conn.execute(
        sa.update(jobs)
        .where(jobs.c.id.in_(list(members)), jobs.c.first_ended_at.is_(None))
        .values(first_ended_at=now)
        .returning(jobs.c.batch_id)
    )
    return Counter(row.batch_id for row in first)


class BatchProgress(NamedTuple):
    ended: int
    total: int
    continuation_id: uuid.UUID | None


async def count_ended(conn: AsyncConnection, batch_id: uuid.UUID, added: int) -> BatchProgress:
    """Add ``added`` members to the batch's ended count; its progress after that."""
    row = (
        await conn.execute(
            sa.update(batches)
            .where(batches.c.id == batch_id)
            .values(ended=batches.c.ended + added)
            .returning(batches.c.ended, batches.c.total, batches.c.continuation_id)
        )
    ).one()
    return BatchProgress(row.ended, row.total, row.continuation_id)


async def complete_batch(conn: AsyncConnection, batch_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(sa.update(batches).where(batches.c.id == batch_id).values(completed_at=now))


async def routing(conn: AsyncConnection, job_ids: Sequence[uuid.UUID]) -> list[Row]:
    """Id, queue and trace context of the listed jobs, for their messages."""
    query = sa.select(jobs.c.id, jobs.c.queue, jobs.c.trace_context)
    return list((await conn.execute(query.where(jobs.c.id.in_(list(job_ids))))).all())
