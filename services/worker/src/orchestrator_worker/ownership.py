"""The store side of owning a job: renewing its lease, and handing it back at shutdown."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import outbox
from orchestrator.db import db_now
from orchestrator.lifecycle import Change, State
from orchestrator.store import ownership as store_ownership
from orchestrator.transitions import Transitions


async def renew_leases(
    engine: AsyncEngine, worker_id: str, job_ids: Sequence[uuid.UUID], lease: timedelta
) -> set[uuid.UUID]:
    """Extend the leases of the jobs still Processing under this worker; returns those ids.

    A job missing from the answer was deleted or taken over by another worker.
    """
    async with engine.begin() as conn:
        now = await db_now(conn)
        return await store_ownership.renew_leases(conn, worker_id, job_ids, now + lease)


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
            where=store_ownership.owned_by(worker_id),
            now=now,
            returning=store_ownership.ROUTING_COLUMNS,
            elect=False,
        )
        return await outbox.add(
            conn,
            [outbox.Publication(r.id, r.queue, r.trace_context or {}) for r in moved],
            now,
        )
