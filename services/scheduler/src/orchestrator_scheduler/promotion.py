"""Delayed jobs: due ``Scheduled`` jobs become ``Enqueued`` on time, each exactly once.

The :class:`Promoter` promotes every due job in indexed batches (``ix_jobs_scheduled_due``),
through the state machine and the outbox, publishes them at once (the outbox fast path), then
sleeps until the next due time. Times come from the database clock; the sleep itself is measured
on the monotonic clock, so a wall clock jumping backwards can never stretch it beyond
``max_sleep``. An API that stores an earlier job wakes it through the wake-up exchange; the cap on
the sleep is the safety net when a wake-up is lost.

Retries come back through the broker's delay levels on their own; a ``Scheduled`` job waiting
for a ``retry`` is promoted here only once it is overdue by ``retry_grace`` (its message was
lost: a safety net). If the message comes after all, the claim's compare-and-set drops it.

Several promoters may run at once: ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) splits the due rows
between them and the compare-and-set on ``Scheduled`` promotes each job once whatever happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import outbox
from orchestrator.db import db_now
from orchestrator.lifecycle import Change, RowChange, State
from orchestrator.metrics import SCHEDULER_LATENESS
from orchestrator.outbox import OutboxSender, Pending
from orchestrator.store import promotion as store_promotion
from orchestrator.store.promotion import DELAY
from orchestrator.store.tables import Row
from orchestrator.tracing import promotion_headers
from orchestrator.transitions import Transitions

log = logging.getLogger(__name__)
Clock = Callable[[AsyncConnection], Awaitable[datetime]]


async def promote_due(
    conn: AsyncConnection,
    transitions: Transitions,
    now: datetime,
    *,
    limit: int,
    retry_grace: timedelta = timedelta(seconds=60),
) -> tuple[list[Pending], bool]:
    """Promote up to ``limit`` jobs due by ``now``, oldest due first; returns their outbox
    entries and whether more may be due. Election filters may have a job enter another state
    than ``Enqueued``; only the jobs enqueued get a message."""
    due = await store_promotion.due(conn, now, retry_grace, limit)
    if not due:
        return [], False
    items = [
        RowChange(
            row.id,
            Change(
                "Due" if row.due_at > now - retry_grace else "Retry overdue",
                data={"due_at": row.due_at.isoformat()},
            ),
        )
        for row in due
    ]
    moved = await transitions.move_each(
        conn, items, expected={State.SCHEDULED}, target=State.ENQUEUED, now=now
    )
    _observe_lateness(due, set(moved), now)
    enqueued = [job_id for job_id in moved if moved.entered(job_id, State.ENQUEUED)]
    rows = await store_promotion.message_columns(conn, enqueued)
    # Each promotion is a span in its job's trace; the attempt is the one it leads to.
    publications = [
        outbox.Publication(
            r.id, r.queue, promotion_headers(r.id, r.name, r.queue, r.attempt + 1, r.trace_context)
        )
        for r in rows
    ]
    return await outbox.add(conn, publications, now) + moved.pending, len(due) == limit


def _observe_lateness(due: Sequence[Row], moved: set[uuid.UUID], now: datetime) -> None:
    """How late each promoted job was by the database clock (``retry``: re-promoted because its
    message never came back, so at least the retry grace late)."""
    for row in due:
        if row.id in moved:
            kind = "delayed" if row.scheduled_reason == DELAY else "retry"
            SCHEDULER_LATENESS.labels(kind).observe((now - row.due_at).total_seconds())


async def next_due(
    conn: AsyncConnection, retry_grace: timedelta = timedelta(seconds=60)
) -> datetime | None:
    """When the next job becomes due for promotion: a delayed job at its due time, a retry
    one grace period after it (probes of the partial index)."""
    return await store_promotion.next_due(conn, retry_grace)


def sleep_for(due: datetime | None, now: datetime, cap: float) -> float:
    """Seconds until ``due`` by the database clock, within ``[0, cap]``."""
    if due is None:
        return cap
    return max(0.0, min(cap, (due - now).total_seconds()))


class Promoter:
    """Promotes due jobs, then sleeps until the next due time, a wake-up, or ``max_sleep``."""

    def __init__(
        self,
        engine: AsyncEngine,
        sender: OutboxSender,
        transitions: Transitions,
        *,
        batch: int = 1000,
        first_batch: int = 100,
        max_sleep: float = 5.0,
        clock: Clock = db_now,
        active: Callable[[], bool] = lambda: True,
        retry_grace: float = 60.0,
    ) -> None:
        self._engine = engine
        self._sender = sender
        self._transitions = transitions
        self.batch = batch
        #: A burst's first jobs go out in a small batch, so that their messages are published
        #: (and run) while the next batches are promoted; the batches then double up to
        #: ``batch`` (a large backlog is promoted in large transactions).
        self.first_batch = min(first_batch, batch)
        self._limit = self.first_batch
        self.max_sleep = max_sleep
        self._clock = clock
        self._active = active
        self._retry_grace = timedelta(seconds=retry_grace)
        self._woken = asyncio.Event()
        #: Epoch seconds of the next due time this promoter knows of (None: none).
        self.next_due_at: float | None = None
        self.promoted = 0

    def wake(self) -> None:
        """Look again now (leadership gained, shutting down)."""
        self._woken.set()

    def hint(self, due_at: float) -> None:
        """A job due at ``due_at`` (epoch seconds) was stored: wake if it is earlier than
        the next due time known."""
        if self.next_due_at is None or due_at < self.next_due_at:
            self.next_due_at = due_at
            self._woken.set()

    async def step(self) -> float:
        """Promote what is due (one batch); returns how long to sleep before the next step."""
        self._woken.clear()  # a wake-up arriving from here on cuts the coming sleep short
        if not self._active():
            return self.max_sleep
        async with self._engine.begin() as conn:
            now = await self._clock(conn)
            read_at = time.monotonic()
            pending, more = await promote_due(
                conn, self._transitions, now, limit=self._limit, retry_grace=self._retry_grace
            )
            upcoming = None if more else await next_due(conn, self._retry_grace)
        self._sender.submit(pending)
        self.promoted += len(pending)
        if more:
            self._limit = min(self.batch, self._limit * 2)
            return 0.0
        self._limit = self.first_batch
        self.next_due_at = upcoming.timestamp() if upcoming is not None else None
        # Sleep until the due time measured from when ``now`` was read, not from commit.
        return max(0.0, sleep_for(upcoming, now, self.max_sleep) - (time.monotonic() - read_at))

    async def tick(self, stop: asyncio.Event) -> bool:
        """One step and the sleep after it (a :class:`~orchestrator.loops.Loop` tick that always
        asks to run again; the sleep ends early on a wake-up or on ``stop``)."""
        try:
            delay = await self.step()
        except Exception:
            log.exception("promoting due jobs failed; retrying in 1 s")
            delay = 1.0
        if delay > 0 and not stop.is_set():
            waits = [asyncio.ensure_future(self._woken.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
        return True
