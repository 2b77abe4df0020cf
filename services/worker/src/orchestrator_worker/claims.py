"""Claiming delivered jobs in the store: one compare-and-set for a whole batch of deliveries."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import metrics, outbox
from orchestrator.broker import ENQUEUED_AT_HEADER, decode_job_id
from orchestrator.lifecycle import Change, State
from orchestrator.outbox import Pending
from orchestrator.store import claims as store_claims
from orchestrator.store.tables import Row
from orchestrator.transitions import Transitions
from orchestrator_worker.intake import Delivery

log = logging.getLogger(__name__)
_TRACE_HEADERS = ("traceparent", "tracestate")


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker now owns, with what it needs to run it."""

    job_id: uuid.UUID
    name: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempt: int
    timeout_seconds: float | None
    trace_context: dict[str, str] | None
    claimed_at: datetime
    retries: int = 0
    retries_used: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    #: Trace context of the message that delivered the job (its publish span), if it had one.
    message_trace: dict[str, str] | None = None


@dataclass(frozen=True)
class ClaimResult:
    claimed: dict[uuid.UUID, ClaimedJob]
    #: Every delivery that named a job, with that job's id (claimed or not).
    decoded: list[tuple[Delivery, uuid.UUID]]
    #: Deliveries whose body is not a job message, or names a job that does not exist; they
    #: are rejected into the dead-letter queue.
    undecodable: list[Delivery]
    #: Outbox entries sending early retry messages round the delay levels again.
    redelayed: list[Pending] = field(default_factory=list)


def decode(deliveries: Sequence[Delivery]) -> ClaimResult:
    """Sort deliveries into those naming a job and those that cannot be one of ours."""
    decoded: list[tuple[Delivery, uuid.UUID]] = []
    undecodable: list[Delivery] = []
    for delivery in deliveries:
        job_id = decode_job_id(delivery.message.body)
        if job_id is None:
            undecodable.append(delivery)
        else:
            decoded.append((delivery, job_id))
    return ClaimResult({}, decoded, undecodable)


async def claim(
    conn: AsyncConnection,
    transitions: Transitions,
    batch: ClaimResult,
    worker_id: str,
    lease: timedelta,
    now: datetime,
    only: set[uuid.UUID] | None = None,
) -> None:
    """``Enqueued → Processing`` (or a due ``Scheduled`` retry) for every decoded delivery's job,
    in the caller's transaction; fills ``batch.claimed``. The filters see the claims through
    their applied hooks; a claim is not elected (the delivery is the worker's to run).
    ``only``: the jobs the caller locked (see ``Transitions.lock``); others are lost claims."""
    ids = list({job_id for _, job_id in batch.decoded})
    if not ids:
        return
    rows = await transitions.move(
        conn,
        ids if only is None else [i for i in ids if i in only],
        expected={State.ENQUEUED, State.SCHEDULED},
        target=State.PROCESSING,
        change=Change(
            reason=started_by(worker_id),
            values=store_claims.started(worker_id, now, now + lease),
            data={"worker": worker_id},
        ),
        where=store_claims.due(now),
        now=now,
        elect=False,
        returning=store_claims.CLAIMED_COLUMNS,
    )
    batch.claimed.update(_claimed_jobs(rows, batch, now))
    await _unclaimed(conn, batch, ids, now)


async def claim_now(
    engine: AsyncEngine,
    transitions: Transitions,
    batch: ClaimResult,
    worker_id: str,
    lease: timedelta,
) -> datetime | None:
    """:func:`claim` as one statement that commits on its own (see
    :meth:`Transitions.claim_now`); fills ``batch.claimed`` and returns the database's time
    of the claim (None: no delivery named a job). Unlike :func:`claim` it does not sort out
    the deliveries whose job it did not claim (the caller does, before acking any of them)."""
    ids = list({job_id for _, job_id in batch.decoded})
    if not ids:
        return None
    now, rows = await transitions.claim_now(
        engine,
        ids,
        worker_id=worker_id,
        lease=lease,
        reason=started_by(worker_id),
        data={"worker": worker_id},
    )
    batch.claimed.update(_claimed_jobs(rows, batch, now))
    return now


def started_by(worker_id: str) -> str:
    """The reason a claim's history row gives."""
    return f"Started by {worker_id}"


def _claimed_jobs(
    rows: Sequence[Row], batch: ClaimResult, now: datetime
) -> dict[uuid.UUID, ClaimedJob]:
    delivered = _message_traces(batch.decoded)
    return {
        row.id: ClaimedJob(
            job_id=row.id,
            name=row.name,
            queue=row.queue,
            # Stored arguments may be unreadable (outcomes.Unreadable): the run fails them.
            args=list(row.args) if isinstance(row.args, list) else [row.args],
            kwargs=dict(row.kwargs) if isinstance(row.kwargs, dict) else {"": row.kwargs},
            attempt=row.attempt,
            timeout_seconds=row.timeout_seconds,
            trace_context=row.trace_context,
            claimed_at=now,
            retries=row.retries,
            retries_used=row.retries_used,
            options=dict(row.options or {}),
            message_trace=delivered.get(row.id),
        )
        for row in rows
    }


async def _unclaimed(
    conn: AsyncConnection, batch: ClaimResult, ids: list[uuid.UUID], now: datetime
) -> None:
    """Deliveries naming no existing job go to ``undecodable``; early retries' messages go
    round the delay levels again (``batch.redelayed``)."""
    await _set_aside_unknown(conn, batch, [i for i in ids if i not in batch.claimed])
    early = [job_id for job_id in ids if job_id not in batch.claimed]
    batch.redelayed.extend(await redelay_early(conn, early, now))


def _message_traces(
    decoded: Sequence[tuple[Delivery, uuid.UUID]],
) -> dict[uuid.UUID, dict[str, str]]:
    """The W3C headers each job's delivery carried (the last, when a job came twice)."""
    traces: dict[uuid.UUID, dict[str, str]] = {}
    for delivery, job_id in decoded:
        headers = delivery.message.headers or {}
        carried = {k: _text(headers[k]) for k in _TRACE_HEADERS if headers.get(k)}
        if carried:
            traces[job_id] = carried
    return traces


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def redelay_early(
    conn: AsyncConnection, job_ids: Sequence[uuid.UUID], now: datetime
) -> list[Pending]:
    """Send retry messages that arrived before their job's due time (database clock) round the
    delay levels again for the rest of the wait, rounded up: an early message is never dropped.

    Its delivery is then acked like any lost claim; the new message is committed here, with the
    claim, so the wake-up cannot be lost in between.
    """
    if not job_ids:
        return []
    rows = await store_claims.early_retries(conn, job_ids, now)
    publications = [
        outbox.Publication(
            row.id,
            row.queue,
            row.trace_context or {},
            max(1, math.ceil((row.due_at - now).total_seconds())),
        )
        for row in rows
    ]
    if publications:
        log.info("%d retry messages arrived early; delaying them again", len(publications))
    return await outbox.add(conn, publications, now)


async def republish(conn: AsyncConnection, batch: ClaimResult, now: datetime) -> list[Pending]:
    """Hand back deliveries no slot could take: a new message for each job still waiting for
    one (``Enqueued``, or a ``Scheduled`` retry: due now, or round the delay levels for the rest
    of its wait), added to the outbox in the caller's transaction; the deliveries are then
    acked. Unlike a ``nack``, this never counts towards the queue's delivery limit. Other
    deliveries are stale copies (nothing to send); those naming no job move to ``undecodable``.
    """
    ids = list({job_id for _, job_id in batch.decoded})
    if not ids:
        return []
    rows = await store_claims.waiting(conn, ids, now)
    publications = [outbox.Publication(r.id, r.queue, r.trace_context or {}) for r in rows]
    sent = {p.job_id for p in publications}
    await _set_aside_unknown(conn, batch, [i for i in ids if i not in sent])
    later = await redelay_early(conn, [i for i in ids if i not in sent], now)
    return await outbox.add(conn, publications, now) + later


async def _set_aside_unknown(
    conn: AsyncConnection, batch: ClaimResult, unclaimed: list[uuid.UUID]
) -> None:
    """Move deliveries naming no existing job to ``undecodable`` (a lost claim is normal: a
    duplicate, a deleted job; a job that does not exist is a dead letter)."""
    if not unclaimed:
        return
    gone = set(unclaimed) - await store_claims.existing(conn, unclaimed)
    if gone:
        batch.undecodable.extend(d for d, job_id in batch.decoded if job_id in gone)
        batch.decoded[:] = [(d, job_id) for d, job_id in batch.decoded if job_id not in gone]


def observe_started(batch: ClaimResult, now: datetime) -> None:
    """Count the claimed jobs once their claim has committed."""
    for delivery, job_id in batch.decoded:
        job = batch.claimed.get(job_id)
        if job is None:
            continue
        metrics.JOBS_STARTED.labels(job.queue, job.name).inc()
        enqueued_at = (delivery.message.headers or {}).get(ENQUEUED_AT_HEADER)
        if isinstance(enqueued_at, int | float):
            metrics.ENQUEUE_TO_START.labels(job.queue).observe(now.timestamp() - enqueued_at)
