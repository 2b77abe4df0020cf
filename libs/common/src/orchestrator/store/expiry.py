"""Jobs past their retention: the ended jobs whose ``expires_at`` passed and, when configured,
jobs Failed for too long, removed with their history in bounded batches. Their waiting
continuations are moved on first through :class:`orchestrator.transitions.Transitions`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import is_postgres
from orchestrator.lifecycle import FINAL, State
from orchestrator.store.tables import history, jobs


async def _choose(
    conn: AsyncConnection,
    condition: sa.ColumnElement[bool],
    oldest_first: sa.ColumnElement[Any],
    batch: int,
) -> list[uuid.UUID]:
    query = sa.select(jobs.c.id).where(condition).order_by(oldest_first).limit(batch)
    if is_postgres(conn):
        # Several janitors split the work instead of waiting on each other's rows.
        query = query.with_for_update(skip_locked=True)
    return list((await conn.execute(query)).scalars())


async def expired(conn: AsyncConnection, now: datetime, batch: int) -> list[uuid.UUID]:
    """Up to ``batch`` Succeeded/Deleted jobs whose ``expires_at`` is before ``now``, the
    earliest first, locked (PostgreSQL, skipping those another janitor holds)."""
    condition = sa.and_(jobs.c.expires_at < now, jobs.c.state.in_([s.value for s in FINAL]))
    return await _choose(conn, condition, jobs.c.expires_at, batch)


async def failed_before(conn: AsyncConnection, before: datetime, batch: int) -> list[uuid.UUID]:
    """Up to ``batch`` jobs Failed since before ``before``, the longest Failed first, locked
    (PostgreSQL, skipping those another janitor holds)."""
    condition = sa.and_(jobs.c.state == State.FAILED.value, jobs.c.state_changed_at < before)
    return await _choose(conn, condition, jobs.c.state_changed_at, batch)


async def awaiting_children(
    conn: AsyncConnection, parent_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """The continuations of the listed jobs still Awaiting them."""
    query = sa.select(jobs.c.id).where(
        jobs.c.parent_id.in_(parent_ids), jobs.c.state == State.AWAITING.value
    )
    return list((await conn.execute(query)).scalars())


async def delete(conn: AsyncConnection, job_ids: Sequence[uuid.UUID]) -> None:
    """Delete the listed jobs with their history."""
    await conn.execute(sa.delete(history).where(history.c.job_id.in_(job_ids)))
    await conn.execute(sa.delete(jobs).where(jobs.c.id.in_(job_ids)))
