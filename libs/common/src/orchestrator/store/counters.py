"""Per-hour counts of the jobs that entered each counted state: append-only rows that readers
sum (an in-place counter row was a hot spot), folded by the janitor once the hour is over."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.lifecycle import State
from orchestrator.store.tables import counters


async def add(conn: AsyncConnection, now: datetime, counts: Counter[State]) -> None:
    """Add to the counters of ``now``'s hour."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    rows = [{"hour": hour, "state": state.value, "count": n} for state, n in counts.items() if n]
    if rows:
        await conn.execute(sa.insert(counters), rows)


async def per_hour(conn: AsyncConnection, since: datetime) -> dict[tuple[datetime, str], int]:
    """Per (hour, state), how many jobs entered the state, for hours from ``since`` on."""
    query = (
        sa.select(counters.c.hour, counters.c.state, sa.func.sum(counters.c.count))
        .where(counters.c.hour >= since)
        .group_by(counters.c.hour, counters.c.state)
    )
    return {(hour, state): int(total) for hour, state, total in await conn.execute(query)}


#: Any constant works; it only has to be the same for every janitor.
_FOLD_LOCK = 0x6F72636865737472


async def lock_folding(conn: AsyncConnection) -> bool:
    """Take the folding lock until the transaction ends (PostgreSQL); False when another
    janitor holds it: two janitors folding the same hour would each sum and delete the other's
    rows."""
    locked = await conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(_FOLD_LOCK)))
    return bool(locked.scalar_one())


async def fold_before(conn: AsyncConnection, hour: datetime, groups: int) -> int:
    """Replace the rows of up to ``groups`` (hour, state) pairs of hours before ``hour`` that have
    more than one row by one row holding their sum; returns how many pairs."""
    query = (
        sa.select(counters.c.hour, counters.c.state, sa.func.sum(counters.c.count))
        .where(counters.c.hour < hour)
        .group_by(counters.c.hour, counters.c.state)
        .having(sa.func.count() > 1)
        .limit(groups)
    )
    sums = (await conn.execute(query)).all()
    for pair_hour, state, total in sums:
        await conn.execute(
            sa.delete(counters).where(counters.c.hour == pair_hour, counters.c.state == state)
        )
        await conn.execute(
            sa.insert(counters).values(hour=pair_hour, state=state, count=int(total))
        )
    return len(sums)
