"""Folding the append-only per-hour counters: one row per (hour, state) once the hour is over."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import db_now, is_postgres
from orchestrator.store import counters as store_counters


async def fold_counters(engine: AsyncEngine, *, groups: int = 500) -> int:
    """Replace the rows of up to ``groups`` finished (hour, state) pairs by their sum."""
    async with engine.begin() as conn:
        if is_postgres(conn) and not await store_counters.lock_folding(conn):
            return 0
        now = await db_now(conn)
        current_hour = now.replace(minute=0, second=0, microsecond=0)
        return await store_counters.fold_before(conn, current_hour, groups)
