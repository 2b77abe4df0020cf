"""A person's decisions about one job (API, dashboard, dead-letter replay): delete, requeue.

Both return the outbox entries the change added (continuations a deletion released, the
requeued job's message), for the caller to publish after commit. Election filters may have the
job enter another state instead; a requeued job elected elsewhere gets no message.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import outbox, store
from orchestrator.errors import ConflictError
from orchestrator.lifecycle import DELETABLE, REQUEUEABLE, Change, State
from orchestrator.transitions import Transitions


async def delete_job(
    conn: AsyncConnection,
    transitions: Transitions,
    job_id: uuid.UUID,
    now: datetime,
    reason: str,
) -> list[outbox.Pending]:
    """Move a job to Deleted from any other state; deleting a Deleted job changes nothing."""
    row = await store.get_job(conn, job_id)
    if row.state == State.DELETED.value:
        return []
    moved = await transitions.move(
        conn, [job_id], expected=DELETABLE, target=State.DELETED, change=Change(reason), now=now
    )
    if not moved:
        raise ConflictError(f"job {job_id} changed state while being deleted; try again")
    return moved.pending


#: A requeue starts afresh: a new retry budget, no losses counted, no worker.
_FRESH = {"retries_used": 0, "lost_count": 0, "worker_id": None}


async def requeue_job(
    conn: AsyncConnection,
    transitions: Transitions,
    job_id: uuid.UUID,
    now: datetime,
    reason: str,
) -> list[outbox.Pending]:
    """Run a job again now with a fresh retry budget."""
    row = await store.get_job(conn, job_id)
    if State(row.state) not in REQUEUEABLE:
        raise ConflictError(
            f"job {job_id} is {row.state}; only jobs not queued or running can be requeued"
        )
    moved = await transitions.move(
        conn,
        [job_id],
        expected=REQUEUEABLE,
        target=State.ENQUEUED,
        change=Change(reason, values=_FRESH),
        now=now,
    )
    if not moved:
        raise ConflictError(f"job {job_id} changed state while being requeued; try again")
    if not moved.entered(job_id, State.ENQUEUED):
        return moved.pending
    return moved.pending + await outbox.add(
        conn, [outbox.Publication(job_id, row.queue, row.trace_context or {})], now
    )
