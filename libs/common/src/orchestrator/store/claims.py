"""What a worker's claim reads and writes of the jobs it was delivered (the move itself goes
through :class:`orchestrator.transitions.Transitions`; these are its pieces and the reads
around it)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import one_of
from orchestrator.lifecycle import State
from orchestrator.store.tables import Row, jobs

#: What a claim returns of each job it took: what the worker needs to run it.
CLAIMED_COLUMNS: Final[tuple[sa.Column[Any], ...]] = (
    jobs.c.name,
    jobs.c.queue,
    jobs.c.args,
    jobs.c.kwargs,
    jobs.c.attempt,
    jobs.c.timeout_seconds,
    jobs.c.trace_context,
    jobs.c.retries,
    jobs.c.retries_used,
    jobs.c.options,
)


def started(worker_id: str, now: datetime, lease_until: datetime) -> dict[str, Any]:
    """The columns a claim sets: the next attempt, run by ``worker_id`` from ``now``, its lease
    held until ``lease_until``."""
    return {
        "attempt": jobs.c.attempt + 1,
        "lease_until": lease_until,
        "worker_id": worker_id,
        "started_at": now,
    }


def due(now: datetime) -> sa.ColumnElement[bool]:
    """An Enqueued job, or a Scheduled one whose time has come (a retry's message may arrive
    early)."""
    return sa.or_(jobs.c.state == State.ENQUEUED.value, jobs.c.due_at <= now)


async def early_retries(
    conn: AsyncConnection, job_ids: Sequence[uuid.UUID], now: datetime
) -> list[Row]:
    """The listed jobs that are Scheduled retries not due yet: id, queue, due time, trace."""
    query = sa.select(jobs.c.id, jobs.c.queue, jobs.c.due_at, jobs.c.trace_context).where(
        one_of(conn, jobs.c.id, job_ids),
        jobs.c.state == State.SCHEDULED.value,
        jobs.c.scheduled_reason == "retry",
        jobs.c.due_at > now,
    )
    return list((await conn.execute(query)).all())


async def waiting(conn: AsyncConnection, job_ids: Sequence[uuid.UUID], now: datetime) -> list[Row]:
    """The listed jobs still waiting for a message (Enqueued, or Scheduled and due): id, queue,
    trace."""
    condition = sa.or_(
        jobs.c.state == State.ENQUEUED.value,
        sa.and_(jobs.c.state == State.SCHEDULED.value, jobs.c.due_at <= now),
    )
    query = sa.select(jobs.c.id, jobs.c.queue, jobs.c.trace_context).where(
        jobs.c.id.in_(list(job_ids)), condition
    )
    return list((await conn.execute(query)).all())


async def existing(conn: AsyncConnection, job_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of the listed jobs exist."""
    query = sa.select(jobs.c.id).where(one_of(conn, jobs.c.id, job_ids))
    return set((await conn.execute(query)).scalars())
