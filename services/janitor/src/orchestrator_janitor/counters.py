"""Folding the append-only per-hour counters: one row per (hour, state) once the hour is over."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import db_now, is_postgres
from orchestrator.models import StateCounter

_counters = StateCounter.__table__  # type: ignore[attr-defined]
#: Any constant works; it only has to be the same for every janitor.
_FOLD_LOCK = 0x6F72636865737472


async def fold_counters(engine: AsyncEngine, *, groups: int = 500) -> int:
    """Replace the rows of up to ``groups`` finished (hour, state) pairs by their sum."""
    async with engine.begin() as conn:
        if is_postgres(conn):
            # Two janitors folding the same hour would each sum and delete the other's rows.
            locked = await conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(_FOLD_LOCK)))
            if not locked.scalar_one():
                return 0
        now = await db_now(conn)
        current_hour = now.replace(minute=0, second=0, microsecond=0)
        query = (
            sa.select(_counters.c.hour, _counters.c.state, sa.func.sum(_counters.c.count))
            .where(_counters.c.hour < current_hour)
            .group_by(_counters.c.hour, _counters.c.state)
            .having(sa.func.count() > 1)
            .limit(groups)
        )
        sums = (await conn.execute(query)).all()
        for hour, state, total in sums:
            await conn.execute(
                sa.delete(_counters).where(_counters.c.hour == hour, _counters.c.state == state)
            )
            await conn.execute(
                sa.insert(_counters).values(hour=hour, state=state, count=int(total))
            )
        return len(sums)
