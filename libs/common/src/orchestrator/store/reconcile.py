"""``Enqueued`` jobs per queue, for reconciliation with the broker (a job whose message is gone
gets a new outbox entry; the counting and choosing is the scheduler's)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.lifecycle import State
from orchestrator.store.tables import Row, jobs


async def enqueued_count(conn: AsyncConnection, queue: str, at_most: int) -> int:
    """``Enqueued`` jobs of ``queue``, counting at most ``at_most`` (so a long backlog costs one
    bounded index scan)."""
    enqueued = (
        sa.select(sa.literal(1))
        .where(jobs.c.queue == queue, jobs.c.state == State.ENQUEUED.value)
        .limit(at_most)
        .subquery()
    )
    return int((await conn.execute(sa.select(sa.func.count()).select_from(enqueued))).scalar_one())


async def enqueued_before(
    conn: AsyncConnection, queue: str, entered_before: datetime, limit: int
) -> list[Row]:
    """Up to ``limit`` jobs of ``queue`` (id, trace_context) in ``Enqueued`` since before
    ``entered_before``, those that entered it first first."""
    since = jobs.c.state_changed_at
    query = (
        sa.select(jobs.c.id, jobs.c.trace_context)
        .where(jobs.c.queue == queue, jobs.c.state == State.ENQUEUED.value, since < entered_before)
        .order_by(since, jobs.c.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).all())
