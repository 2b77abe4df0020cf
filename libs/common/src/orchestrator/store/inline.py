"""The reads :class:`orchestrator.testing.InlineClient` needs beyond the roles' own: its store is
a private SQLite file, where ``rowid`` is the order rows were inserted in."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.lifecycle import State
from orchestrator.store.promotion import DELAY
from orchestrator.store.tables import Row, jobs

_inserted: sa.ColumnClause[int] = sa.literal_column("jobs.rowid", sa.Integer())


async def every_job(conn: AsyncConnection) -> list[Row]:
    """Every job, oldest first (created together: in the order they were inserted)."""
    query = sa.select(jobs).order_by(jobs.c.created_at, _inserted)
    return list((await conn.execute(query)).all())


async def delayed_due(conn: AsyncConnection, until: datetime | None) -> list[uuid.UUID]:
    """The delayed jobs (``Scheduled`` for a requested time, not a retry) due by ``until``
    (None: all of them), earliest first."""
    query = sa.select(jobs.c.id).where(
        jobs.c.state == State.SCHEDULED.value, jobs.c.scheduled_reason == DELAY
    )
    if until is not None:
        query = query.where(jobs.c.due_at <= until)
    query = query.order_by(jobs.c.due_at, _inserted)
    return list((await conn.execute(query)).scalars())
