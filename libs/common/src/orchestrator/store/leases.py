"""Jobs whose lease ran out: ``Processing`` with ``lease_until`` in the past, their worker lost.
Moving them on goes through :class:`orchestrator.transitions.Transitions`, guarded by the lease
that expired."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import is_postgres
from orchestrator.lifecycle import State
from orchestrator.store.tables import Row, jobs


async def expired(conn: AsyncConnection, now: datetime, limit: int) -> list[Row]:
    """Up to ``limit`` Processing jobs whose lease ended before ``now`` (id, lease_until,
    worker_id, lost_count, attempt), the longest expired first; on PostgreSQL locked, skipping
    those another scheduler holds."""
    columns = ("id", "lease_until", "worker_id", "lost_count", "attempt")
    query = (
        sa.select(*(jobs.c[name] for name in columns))
        .where(jobs.c.state == State.PROCESSING.value, jobs.c.lease_until < now)
        .order_by(jobs.c.lease_until)
        .limit(limit)
    )
    if is_postgres(conn):
        query = query.with_for_update(skip_locked=True)
    return list((await conn.execute(query)).all())


async def routing(conn: AsyncConnection, job_ids: Sequence[uuid.UUID]) -> list[Row]:
    """What a new message of each listed job needs: id, queue, trace_context."""
    query = sa.select(jobs.c.id, jobs.c.queue, jobs.c.trace_context).where(
        jobs.c.id.in_(list(job_ids))
    )
    return list((await conn.execute(query)).all())
