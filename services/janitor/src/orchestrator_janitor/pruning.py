"""Pruning what only grows: old dead letters, completed batches, per-hour counters.

Each call removes at most ``batch`` rows in one short transaction, chosen by database time; on
PostgreSQL the rows are picked ``FOR UPDATE SKIP LOCKED`` so several janitors split the work
instead of waiting on each other.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import db_now
from orchestrator.store import dead_letters as store_dead_letters
from orchestrator.store import pruning as store_pruning


async def prune_dead_letters(engine: AsyncEngine, *, older_than: timedelta, batch: int) -> int:
    async with engine.begin() as conn:
        now = await db_now(conn)
        return await store_dead_letters.prune(conn, now - older_than, batch=batch)


async def prune_batches(engine: AsyncEngine, *, older_than: timedelta, batch: int) -> int:
    """Batches completed (their continuation released) more than ``older_than`` ago."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        return await store_pruning.completed_batches(conn, now - older_than, batch)


async def prune_counters(engine: AsyncEngine, *, older_than: timedelta, batch: int) -> int:
    """Per-hour counter rows of hours that began more than ``older_than`` ago."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        return await store_pruning.counters_before(conn, now - older_than, batch)
