"""The writes and reads of creating jobs that :mod:`orchestrator.store.jobs` does not hold:
the parents a continuation names, and a batch's row. The jobs themselves are inserted by
:func:`orchestrator.store.jobs.create_jobs` (or ``create_plain_jobs``)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import is_postgres
from orchestrator.store.tables import batches, jobs

#: PostgreSQL's lock_not_available, which a NOWAIT lock raises instead of waiting.
_LOCK_NOT_AVAILABLE = "55P03"
#: The longest pause before taking several parents' locks again.
_MOST_PAUSE_SECONDS = 0.05


async def parent_states(
    conn: AsyncConnection, parent_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The state of each of ``parent_ids`` that exists. On PostgreSQL their rows are share-locked
    until the transaction ends: a parent ending meanwhile waits for it, then finds the new child
    among its Awaiting children.

    Call it before the transaction locks any job row. It never waits for a row while it holds
    one, so it cannot close a cycle of waits: a parent may be ``Awaiting`` itself, and the
    round that ends that parent's parent locks it after rows of its own (docs/architecture.md,
    "Lock order"). One parent is locked with a plain wait; several are locked all at once or
    not at all (``NOWAIT`` in a savepoint), and taken again after a short pause."""
    if not parent_ids:
        return {}
    query = sa.select(jobs.c.id, jobs.c.state).where(jobs.c.id.in_(parent_ids)).order_by(jobs.c.id)
    if not is_postgres(conn):
        return _states(await conn.execute(query))
    if len(parent_ids) == 1:
        return _states(await conn.execute(query.with_for_update(read=True)))
    return await _share_all_or_none(conn, query.with_for_update(read=True, nowait=True))


async def _share_all_or_none(
    conn: AsyncConnection, query: sa.Select[tuple[uuid.UUID, str]]
) -> dict[uuid.UUID, str]:
    pause = 0.001
    while True:
        try:
            async with conn.begin_nested():
                return _states(await conn.execute(query))
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
                raise
        # Whoever holds a parent is a short transaction; jitter keeps two enqueues that
        # collide from colliding again.
        await asyncio.sleep(random.uniform(0, pause))  # noqa: S311 (jitter, not a secret)
        pause = min(pause * 2, _MOST_PAUSE_SECONDS)


def _states(rows: sa.CursorResult[tuple[uuid.UUID, str]]) -> dict[uuid.UUID, str]:
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
