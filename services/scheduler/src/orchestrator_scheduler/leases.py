"""Crash recovery: ``Processing`` jobs whose lease expired run again, or fail once too often.

A worker renews the leases of its running jobs every heartbeat. A job whose lease has expired
lost its worker (``kill -9``, a host gone, a partition): the active scheduler puts it back to
``Enqueued`` with an outbox entry, naming the lost worker, and counts the loss in
``jobs.lost_count``. The run that brings the count to ``worker_lost_limit`` fails the job
instead ("worker lost"): a job that keeps killing its worker stops being retried.

Each move is a compare-and-set on the lease that expired (``lease_until`` and ``worker_id``
unchanged), so an expiry happens at most once, and a worker that renewed in between keeps its
job. When the store comes back after an outage, no lease is expired for one lease period
(:class:`OutageGuard`), so live workers renew theirs first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import outbox
from orchestrator.db import db_now
from orchestrator.lifecycle import Change, RowChange, State
from orchestrator.loops import Loop
from orchestrator.outbox import OutboxSender, Pending
from orchestrator.store import leases as store_leases
from orchestrator.store.tables import Row
from orchestrator.transitions import Transitions

log = logging.getLogger(__name__)
WORKER_LOST = "WorkerLost"


class OutageGuard:
    """Notices that this scheduler could not reach the store for a while and, once it can
    again, holds lease expiry back for one lease period.

    Fed by every store round trip the scheduler makes anyway (the leadership tick), on every
    replica, so a replica that becomes the leader right after an outage knows about it too.
    """

    def __init__(
        self, lease: float, *, silence: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.lease = lease
        self.silence = silence
        self._clock = clock
        self._last_contact = clock()  # a process that cannot reach the store at start counts
        self._hold_until = 0.0

    def contact(self, ok: bool) -> None:
        """Record one store round trip (``ok``: it answered)."""
        if not ok:
            return
        now = self._clock()
        if now - self._last_contact > self.silence:
            self._hold_until = now + self.lease
            log.warning(
                "store answered again after %.1f s; expiring no lease for %.0f s so live workers "
                "renew theirs first",
                now - self._last_contact,
                self.lease,
            )
        self._last_contact = now

    def holding(self) -> bool:
        return self._clock() < self._hold_until


@dataclass(frozen=True)
class Expired:
    """What one pass did: jobs re-enqueued, jobs failed, outbox entries to publish."""

    requeued: int
    failed: int
    pending: list[Pending]


async def expire_leases(
    conn: AsyncConnection,
    transitions: Transitions,
    now: datetime,
    *,
    lost_limit: int,
    limit: int = 500,
) -> Expired:
    """Re-enqueue (or fail) up to ``limit`` Processing jobs whose lease ended before ``now``
    (election filters may replace either; only jobs re-enqueued here get a message)."""
    rows = await store_leases.expired(conn, now, limit)
    again = [r for r in rows if r.lost_count + 1 < lost_limit]
    doomed = [r for r in rows if r.lost_count + 1 >= lost_limit]
    requeued = await transitions.move_each(
        conn,
        [RowChange(r.id, _requeue_change(r, lost_limit), _guard(r)) for r in again],
        expected={State.PROCESSING},
        target=State.ENQUEUED,
        now=now,
    )
    failed = await transitions.move_each(
        conn,
        [RowChange(r.id, _fail_change(r, now), _guard(r)) for r in doomed],
        expected={State.PROCESSING},
        target=State.FAILED,
        now=now,
    )
    enqueued = [job_id for job_id in requeued if requeued.entered(job_id, State.ENQUEUED)]
    pending = await _publications(conn, enqueued, now)
    return Expired(len(requeued), len(failed), pending + requeued.pending + failed.pending)


def _guard(row: Row) -> dict[str, Any]:
    # The lease that expired, exactly: a renewal or a new claim since makes this a no-op.
    return {"lease_until": row.lease_until, "worker_id": row.worker_id}


def _requeue_change(row: Row, lost_limit: int) -> Change:
    losses = row.lost_count + 1
    return Change(
        reason=(
            f"Lease expired: worker {row.worker_id} was lost during attempt {row.attempt} "
            f"(loss {losses} of {lost_limit})"
        ),
        values={"lost_count": losses, "worker_id": None},
        data={"worker": row.worker_id, "lost_count": losses},
    )


def _fail_change(row: Row, now: datetime) -> Change:
    losses = row.lost_count + 1
    message = (
        f"worker lost: {losses} runs ended with their worker gone (the last, attempt "
        f"{row.attempt}, on {row.worker_id}); not run again"
    )
    return Change(
        reason=f"Worker lost: {message}",
        values={
            "lost_count": losses,
            "worker_id": None,
            "error_type": WORKER_LOST,
            "error_message": message,
            "error_traceback": None,
            "finished_at": now,
        },
        data={"worker": row.worker_id, "lost_count": losses},
    )


async def _publications(
    conn: AsyncConnection, job_ids: Sequence[Any], now: datetime
) -> list[Pending]:
    if not job_ids:
        return []
    rows = await store_leases.routing(conn, job_ids)
    publications = [outbox.Publication(r.id, r.queue, r.trace_context or {}) for r in rows]
    return await outbox.add(conn, publications, now)


class LeaseExpiry:
    """The scheduler's lease-expiry loop (:meth:`loop`), run by the lease holder only."""

    def __init__(
        self,
        engine: AsyncEngine,
        sender: OutboxSender,
        guard: OutageGuard,
        transitions: Transitions,
        *,
        lost_limit: int,
        interval: float,
        batch: int = 500,
    ) -> None:
        self._engine = engine
        self._transitions = transitions
        self._sender = sender
        self.guard = guard
        self._lost_limit = lost_limit
        self._interval = interval
        self._batch = batch

    def loop(self) -> Loop:
        return Loop("expire-leases", self._interval, self.tick)

    async def tick(self) -> bool:
        if self.guard.holding():
            return False
        async with self._engine.begin() as conn:
            now = await db_now(conn)
            done = await expire_leases(
                conn, self._transitions, now, lost_limit=self._lost_limit, limit=self._batch
            )
        self._sender.submit(done.pending)
        if done.requeued or done.failed:
            log.warning(
                "expired leases: %d job(s) re-enqueued, %d failed (worker lost)",
                done.requeued,
                done.failed,
            )
        return done.requeued + done.failed >= self._batch
