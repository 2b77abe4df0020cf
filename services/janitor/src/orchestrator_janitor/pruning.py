"""Pruning what only grows: old dead letters, completed batches, per-hour counters.

Each call removes at most ``batch`` rows in one short transaction, chosen by database time; on
PostgreSQL the rows are picked ``FOR UPDATE SKIP LOCKED`` so several janitors split the work
instead of waiting on each other.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import dead_letters
from orchestrator.db import db_now, is_postgres
from orchestrator.models import Batch, StateCounter

_batches = Batch.__table__  # type: ignore[attr-defined]
_counters = StateCounter.__table__  # type: ignore[attr-defined]


async def _delete_chosen(
    conn: AsyncConnection, table: sa.Table, condition: sa.ColumnElement[bool], batch: int
) -> int:
    query = sa.select(table.c.id).where(condition).limit(batch)
    if is_postgres(conn):
        query = query.with_for_update(skip_locked=True)
    ids = list((await conn.execute(query)).scalars())
    if ids:
        await conn.execute(sa.delete(table).where(table.c.id.in_(ids)))
    return len(ids)


async def prune_dead_letters(engine: AsyncEngine, *, older_than: timedelta, batch: int) -> int:
    async with engine.begin() as conn:
        now = await db_now(conn)
        return await dead_letters.prune(conn, now - older_than, batch=batch)


async def prune_batches(engine: AsyncEngine, *, older_than: timedelta, batch: int) -> int:
    """Batches completed (their continuation released) more than ``older_than`` ago."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        done = sa.and_(
            _batches.c.completed_at.is_not(None), _batches.c.completed_at < now - older_than
        )
        return await _delete_chosen(conn, _batches, done, batch)


async def prune_counters(engine: AsyncEngine, *, older_than: timedelta, batch: int) -> int:
    """Per-hour counter rows of hours that began more than ``older_than`` ago."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        return await _delete_chosen(conn, _counters, _counters.c.hour < now - older_than, batch)
