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
