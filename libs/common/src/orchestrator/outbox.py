"""The transactional outbox: publications committed with the change that needs them.

Whoever changes a job so that a message must be sent calls :func:`add` in the same transaction.
After commit the :class:`OutboxSender` publishes at once (the fast path); the scheduler's
:func:`relay_once` publishes whatever the fast path could not (broker down, crash after commit).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import metrics
from orchestrator.batching import Batcher
from orchestrator.broker import JobMessage, Publisher
from orchestrator.db import db_now
from orchestrator.store import outbox as store_outbox

# The entries and their messages are the store's rows (orchestrator.store.outbox); every writer of
# a job adds its publications through this module.
from orchestrator.store.outbox import Pending as Pending
from orchestrator.store.outbox import Publication as Publication
from orchestrator.store.outbox import add as add

log = logging.getLogger(__name__)


async def publish_pending(
    conn: AsyncConnection, publisher: Publisher, pending: Sequence[Pending]
) -> int:
    """Publish, then delete the confirmed entries; unconfirmed ones stay for the relay."""
    sent = await publisher.publish([p.message for p in pending])
    return await record_results(conn, pending, sent)


async def record_results(
    conn: AsyncConnection, pending: Sequence[Pending], sent: Sequence[bool]
) -> int:
    done = [p.entry_id for p, ok in zip(pending, sent, strict=True) if ok]
    failed = [p.entry_id for p, ok in zip(pending, sent, strict=True) if not ok]
    if done:
        await store_outbox.delete(conn, done)
    if failed:
        await store_outbox.count_attempt(conn, failed)
    return len(done)


async def record_results_now(
    engine: AsyncEngine, pending: Sequence[Pending], sent: Sequence[bool]
) -> int:
    """:func:`record_results` committed at once; one round trip on PostgreSQL."""
    if engine.dialect.name != "postgresql":
        async with engine.begin() as conn:
            return await record_results(conn, pending, sent)
    done = [p.entry_id for p, ok in zip(pending, sent, strict=True) if ok]
    failed = [p.entry_id for p, ok in zip(pending, sent, strict=True) if not ok]
    await store_outbox.delete_and_count_attempt_now(engine, done, failed)
    return len(done)


#: Publish rounds that may wait for their confirms at once (see :class:`OutboxSender`).
ROUNDS_IN_FLIGHT = 4


class OutboxSender:
    """The fast path: publishes committed entries right away, many per round of confirms.

    Publishing and recording are pipelined: a round's messages are sent while earlier rounds
    still wait for their confirms (up to :data:`ROUNDS_IN_FLIGHT`; an entry committed just now
    does not wait a whole confirm round trip before it is sent), and published entries are
    deleted from the outbox while the next ones are being published.
    """

    def __init__(self, engine: AsyncEngine, publisher: Publisher | None) -> None:
        self._engine = engine
        self.publisher = publisher
        self._publishing: Batcher[Pending] = Batcher(
            self._publish, name="outbox-publish", max_batch=1000
        )
        self._in_flight: set[asyncio.Task[None]] = set()
        # Nobody waits for the deletes (the relay leaves entries alone for seconds): one
        # statement per 20 ms at most, not one per message when jobs come one at a time.
        self._recording: Batcher[tuple[Pending, bool]] = Batcher(
            self._record, name="outbox-record", max_batch=5000, linger=0.02
        )

    def start(self) -> None:
        self._publishing.start()
        self._recording.start()

    async def stop(self) -> None:
        await self.flush()
        await self._publishing.stop()
        await self._recording.stop()

    def submit(self, pending: Sequence[Pending]) -> None:
        """Hand over entries committed just now; without a broker the relay sends them later."""
        if self.publisher is None:
            return
        for entry in pending:
            self._publishing.submit(entry)

    async def flush(self) -> None:
        """Wait until everything submitted so far has been tried once and recorded."""
        await self._publishing.drain()
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))
        await self._recording.drain()

    async def _publish(self, batch: list[Pending]) -> None:
        """Start a round for ``batch``, waiting only while too many rounds are in flight."""
        while len(self._in_flight) >= ROUNDS_IN_FLIGHT:
            await asyncio.wait(set(self._in_flight), return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(self._publish_round(batch), name="outbox-publish-round")
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _publish_round(self, batch: list[Pending]) -> None:
        publisher = self.publisher
        try:
            assert publisher is not None
            sent = await publisher.publish([p.message for p in batch])
        except Exception:
            log.exception("fast-path publish failed; the relay will send these entries")
            sent = [False] * len(batch)
        for entry, ok in zip(batch, sent, strict=True):
            self._recording.submit((entry, ok))

    async def _record(self, results: list[tuple[Pending, bool]]) -> None:
        try:
            published = await record_results_now(
                self._engine, [entry for entry, _ in results], [ok for _, ok in results]
            )
        except Exception:
            # The entries stay in the outbox; the relay publishes them again (a duplicate
            # message is dropped by the worker's claim).
            log.exception("recording published outbox entries failed")
            return
        metrics.OUTBOX_PUBLISHED.labels("fast").inc(published)


class Relayed(NamedTuple):
    """One relay round: entries published (and deleted), and entries the broker did not take."""

    sent: int
    unsent: int


async def relay_once(
    engine: AsyncEngine, publisher: Publisher, *, older_than: timedelta, limit: int = 500
) -> Relayed:
    """Publish entries the fast path left behind; safe with several relays on PostgreSQL.

    On PostgreSQL the entries stay row-locked (``SKIP LOCKED``) while they are published, so
    relays never send the same entry together. SQLite has one writer at a time: holding its lock
    through a slow publish would stall every other role, so there it reads, publishes, then
    records, and a rare duplicate message is made harmless by the worker's claim.
    """
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            pending = await _due_entries(conn, older_than, limit, lock=True)
            sent = await publish_pending(conn, publisher, pending)
            return Relayed(sent, len(pending) - sent)
    async with engine.begin() as conn:
        pending = await _due_entries(conn, older_than, limit, lock=False)
    confirmed = await publisher.publish([p.message for p in pending])
    async with engine.begin() as conn:
        sent = await record_results(conn, pending, confirmed)
    return Relayed(sent, len(pending) - sent)


async def _due_entries(
    conn: AsyncConnection, older_than: timedelta, limit: int, *, lock: bool
) -> list[Pending]:
    now = await db_now(conn)
    rows = await store_outbox.created_before(conn, now - older_than, limit, lock=lock)
    return [
        Pending(
            row.id,
            JobMessage(
                row.job_id,
                row.queue,
                dict(row.headers),
                row.created_at.timestamp(),
                _remaining(row.delay_seconds, (now - row.created_at).total_seconds()),
            ),
        )
        for row in rows
    ]


def _remaining(delay_seconds: int, waited: float) -> int:
    """What is left of a delay counted from the entry's commit (the relay sends late)."""
    return max(0, math.ceil(delay_seconds - waited))


async def backlog(conn: AsyncConnection) -> int:
    return await store_outbox.backlog(conn)
