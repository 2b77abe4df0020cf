"""Pruning what only grows: completed batches and per-hour counter rows, by age, at most a
batch of rows per call (old dead letters: :func:`orchestrator.store.dead_letters.prune`)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import is_postgres
from orchestrator.store.tables import batches, counters


async def _delete_chosen(
    conn: AsyncConnection, table: sa.Table, condition: sa.ColumnElement[bool], batch: int
) -> int:
    """Delete up to ``batch`` rows of ``table`` matching ``condition``; on PostgreSQL the rows
    are picked ``FOR UPDATE SKIP LOCKED`` so several janitors split the work."""
    query = sa.select(table.c.id).where(condition).limit(batch)
    if is_postgres(conn):
        query = query.with_for_update(skip_locked=True)
    ids = list((await conn.execute(query)).scalars())
    if ids:
        await conn.execute(sa.delete(table).where(table.c.id.in_(ids)))
    return len(ids)


async def completed_batches(conn: AsyncConnection, before: datetime, batch: int) -> int:
    """Delete up to ``batch`` batches completed before ``before``; returns how many."""
    done = sa.and_(batches.c.completed_at.is_not(None), batches.c.completed_at < before)
    return await _delete_chosen(conn, batches, done, batch)


async def counters_before(conn: AsyncConnection, before: datetime, batch: int) -> int:
    """Delete up to ``batch`` per-hour counter rows of hours before ``before``."""
    return await _delete_chosen(conn, counters, counters.c.hour < before, batch)
