"""The store side of owning a job: renewing its lease, and handing it back at shutdown."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import outbox
from orchestrator.db import db_now, is_postgres
from orchestrator.lifecycle import Change, State
from orchestrator.store import jobs_table
from orchestrator.store.moves import in_lock_order
from orchestrator.transitions import Transitions


async def renew_leases(
    engine: AsyncEngine, worker_id: str, job_ids: Sequence[uuid.UUID], lease: timedelta
) -> set[uuid.UUID]:
    """Extend the leases of the jobs still Processing under this worker; returns those ids.

    A job missing from the answer was deleted or taken over by another worker.
    """
    mine = sa.and_(
        jobs_table.c.worker_id == worker_id,
        jobs_table.c.state == State.PROCESSING.value,
        jobs_table.c.id.in_(list(job_ids)),
    )
    async with engine.begin() as conn:
        now = await db_now(conn)
        if is_postgres(conn):
            # In ascending id order, as the outcome writer locks these rows (a plain UPDATE
            # took them in its plan's order and deadlocked with it).
            mine = sa.and_(mine, in_lock_order(mine))
        renewed = await conn.execute(
            sa.update(jobs_table)
            .where(mine)
            .values(lease_until=now + lease)
            .returning(jobs_table.c.id)
        )
        return set(renewed.scalars())


async def hand_back(
    engine: AsyncEngine,
    transitions: Transitions,
    worker_id: str,
    job_ids: Sequence[uuid.UUID],
    *,
    reason: str = "Worker shut down before the job finished",
) -> list[outbox.Pending]:
    """Put unfinished jobs back to Enqueued without spending their retry budget (the filters
    see it through their applied hooks; not elected: the job must not be lost)."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        moved = await transitions.move(
            conn,
            list(job_ids),
            expected={State.PROCESSING},
            target=State.ENQUEUED,
            change=Change(reason),
            where=jobs_table.c.worker_id == worker_id,
            now=now,
            returning=[jobs_table.c.queue, jobs_table.c.trace_context],
            elect=False,
        )
        return await outbox.add(
            conn,
            [outbox.Publication(r.id, r.queue, r.trace_context or {}) for r in moved],
            now,
        )
