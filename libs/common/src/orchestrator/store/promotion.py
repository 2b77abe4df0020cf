"""Scheduled jobs coming due: the delayed ones at their due time, the retries whose message never
came back one grace period after it (partial index ``ix_jobs_scheduled_due``). The promotion
itself goes through :class:`orchestrator.transitions.Transitions`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import is_postgres
from orchestrator.lifecycle import State
from orchestrator.store.tables import Row, jobs

#: ``scheduled_reason`` of a job enqueued with a delay, and of a job waiting for its retry.
DELAY: Final = "delay"
RETRY: Final = "retry"

_scheduled = sa.and_(jobs.c.state == State.SCHEDULED.value, jobs.c.scheduled_reason == DELAY)
_retrying = sa.and_(jobs.c.state == State.SCHEDULED.value, jobs.c.scheduled_reason == RETRY)


def _due(now: datetime, retry_grace: timedelta) -> sa.ColumnElement[bool]:
    """Delayed jobs due by ``now``; retries overdue by the grace period."""
    return sa.or_(
        sa.and_(_scheduled, jobs.c.due_at <= now),
        sa.and_(_retrying, jobs.c.due_at <= now - retry_grace),
    )


async def due(
    conn: AsyncConnection, now: datetime, retry_grace: timedelta, limit: int
) -> list[Row]:
    """Up to ``limit`` jobs due by ``now`` (id, due_at, scheduled_reason), oldest due first; on
    PostgreSQL locked, skipping those another promoter holds."""
    query = (
        sa.select(jobs.c.id, jobs.c.due_at, jobs.c.scheduled_reason)
        .where(_due(now, retry_grace))
        .order_by(jobs.c.due_at)
        .limit(limit)
    )
    if is_postgres(conn):
        query = query.with_for_update(skip_locked=True)
    return list((await conn.execute(query)).all())


async def message_columns(conn: AsyncConnection, job_ids: Sequence[uuid.UUID]) -> list[Row]:
    """What the messages of the listed jobs need: id, name, queue, attempt, trace_context."""
    query = sa.select(
        jobs.c.id, jobs.c.name, jobs.c.queue, jobs.c.attempt, jobs.c.trace_context
    ).where(jobs.c.id.in_(job_ids))
    return list((await conn.execute(query)).all())


async def next_due(conn: AsyncConnection, retry_grace: timedelta) -> datetime | None:
    """When the next job becomes due: a delayed job at its due time, a retry one grace period
    after it (one probe of the partial index each)."""
    times = []
    for condition, offset in ((_scheduled, timedelta(0)), (_retrying, retry_grace)):
        value: Any = (
            await conn.execute(sa.select(sa.func.min(jobs.c.due_at)).where(condition))
        ).scalar_one()
        if isinstance(value, datetime):
            times.append(value + offset)
    return min(times, default=None)
