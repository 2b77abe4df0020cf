"""The writes and reads of creating jobs that :mod:`orchestrator.store.jobs` does not hold:
the parents a continuation names, and a batch's row. The jobs themselves are inserted by
:func:`orchestrator.store.jobs.create_jobs` (or ``create_plain_jobs``)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import is_postgres
from orchestrator.store.tables import batches, jobs


async def parent_states(
    conn: AsyncConnection, parent_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The state of each of ``parent_ids`` that exists. On PostgreSQL their rows are share-locked
    until the transaction ends: a parent ending meanwhile waits for it, then finds the new child
    among its Awaiting children. In ascending id order, as every lock on several job rows is
    taken."""
    if not parent_ids:
        return {}
    query = sa.select(jobs.c.id, jobs.c.state).where(jobs.c.id.in_(parent_ids)).order_by(jobs.c.id)
    if is_postgres(conn):
        query = query.with_for_update(read=True)
    rows = await conn.execute(query)
    return {row.id: row.state for row in rows}


async def insert_batch(
    conn: AsyncConnection,
    batch_id: uuid.UUID,
    total: int,
    continuation_id: uuid.UUID | None,
    now: datetime,
) -> None:
    """A batch of ``total`` members, none ended yet, and the job to enqueue once all have."""
    await conn.execute(
        sa.insert(batches).values(
            id=batch_id, total=total, ended=0, continuation_id=continuation_id, created_at=now
        )
    )
