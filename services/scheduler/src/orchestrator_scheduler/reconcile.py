"""Reconciliation: an ``Enqueued`` job whose message is gone is published again.

A confirmed message can still be lost afterwards: a queue purged by hand, a broker node lost
with data its peers never had. Nothing else would notice: the relay covers publications never
confirmed, lease expiry covers ``Processing``, the retry grace covers ``Scheduled``.

Republishing every job that waited longer than ``ORCHESTRATOR_REPUBLISH_AFTER_SECONDS`` would
double a healthy backlog every pass, so the lease-holding scheduler counts first. For each job
queue it compares the store with the broker: ``Enqueued`` jobs, minus messages ready in the
queue, minus publications still in the outbox. Only a positive difference means messages are
missing, and then that many of the jobs that entered ``Enqueued`` longest ago (and longer ago
than the setting, so a job that just arrived is never touched) get a new outbox entry. The
count may overshoot by deliveries a worker is claiming at that moment; the copies that causes
are dropped by the claim's compare-and-set, and they sit in the queue, so the next pass counts
them. The difference also counts young jobs whose messages went missing too (a purge takes
both); those wait for their own time, and a job republished once is left alone for another
``republish_after`` (remembered in the process: a new lease holder may send one more copy), so
each pass reaches losses an earlier one did not.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from aio_pika.abc import AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import metrics, outbox
from orchestrator.db import db_now
from orchestrator.loops import Loop
from orchestrator.outbox import OutboxSender
from orchestrator.store import outbox as store_outbox
from orchestrator.store import reconcile as store_reconcile
from orchestrator.store.tables import Row
from orchestrator.topology import Topology, queue_depth
from orchestrator_scheduler.gauges import sampled_queues

log = logging.getLogger(__name__)
NAME = "republish-lost"
#: A broker that does not answer a passive declare within this long leaves the queue for later.
_DEPTH_TIMEOUT = 2.0


def pass_interval(republish_after: float) -> float:
    """A tenth of the threshold, between 1 and 30 s: a lost message waits at most 1.1 times it."""
    return min(30.0, max(1.0, republish_after / 10))


async def missing_messages(conn: AsyncConnection, queue: str, ready: int, limit: int) -> int:
    """``Enqueued`` jobs of ``queue`` that no ready message or outbox entry stands for (counting
    at most ``ready + limit`` jobs, so a long backlog costs one bounded index scan)."""
    jobs = await store_reconcile.enqueued_count(conn, queue, ready + limit)
    unsent = await store_outbox.unsent_to(conn, queue)
    return jobs - ready - unsent


async def candidates(
    conn: AsyncConnection, queue: str, entered_before: datetime, limit: int
) -> list[Row]:
    """Up to ``limit`` jobs of ``queue`` in ``Enqueued`` since before ``entered_before``, those
    that entered it first first."""
    return await store_reconcile.enqueued_before(conn, queue, entered_before, limit)


class Recent:
    """Jobs republished within the last ``span`` seconds, per queue (monotonic clock)."""

    def __init__(self, span: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.span = span
        self._clock = clock
        self._sent: dict[str, dict[uuid.UUID, float]] = {}

    def of(self, queue: str) -> dict[uuid.UUID, float]:
        now = self._clock()
        sent = self._sent.setdefault(queue, {})
        for job_id in [j for j, at in sent.items() if now - at >= self.span]:
            del sent[job_id]
        return sent

    def add(self, queue: str, job_ids: list[uuid.UUID]) -> None:
        now = self._clock()
        self._sent.setdefault(queue, {}).update(dict.fromkeys(job_ids, now))


class Republisher:
    """The reconciliation loop (:meth:`loop`), run by the lease holder only."""

    def __init__(
        self,
        engine: AsyncEngine,
        sender: OutboxSender,
        topology: Topology,
        connection: Callable[[], AbstractRobustConnection | None],
        *,
        republish_after: float,
        batch: int = 500,
    ) -> None:
        self._engine = engine
        self._sender = sender
        self._topology = topology
        self._connection = connection
        self.republish_after = timedelta(seconds=republish_after)
        self.batch = batch
        self._recent = Recent(republish_after)
        #: Jobs republished by this instance, for logs and tests.
        self.republished = 0

    def loop(self) -> Loop:
        return Loop(NAME, pass_interval(self.republish_after.total_seconds()), self.tick)

    async def tick(self) -> bool:
        """One pass over every consumed queue; True when a queue had more than a batch."""
        connection = self._connection()
        if self._sender.publisher is None or connection is None or connection.is_closed:
            return False
        async with self._engine.connect() as conn:
            queues = sorted(await sampled_queues(conn))
        more = False
        for queue in queues:
            ready = await self._ready(connection, queue)
            if ready is not None:
                more = await self._reconcile(queue, ready) or more
        return more

    async def _ready(self, connection: AbstractRobustConnection, queue: str) -> int | None:
        try:
            async with asyncio.timeout(_DEPTH_TIMEOUT):
                # A fresh channel each time: a failed passive declare closes its channel.
                channel = await connection.channel()
                try:
                    return (await queue_depth(channel, self._topology, queue))[0]
                finally:
                    if not channel.is_closed:
                        await channel.close()
        except Exception:
            log.debug("depth of queue %r unavailable; reconciled later", queue, exc_info=True)
            return None

    async def _reconcile(self, queue: str, ready: int) -> bool:
        recent = self._recent.of(queue)
        async with self._engine.begin() as conn:
            missing = await missing_messages(conn, queue, ready, self.batch)
            if missing <= 0:
                return False
            wanted = min(missing, self.batch)
            now = await db_now(conn)
            rows = await candidates(conn, queue, now - self.republish_after, wanted + len(recent))
            rows = [r for r in rows if r.id not in recent][:wanted]
            publications = [outbox.Publication(r.id, queue, r.trace_context or {}) for r in rows]
            pending = await outbox.add(conn, publications, now)
        if not pending:
            return False
        self._recent.add(queue, [r.id for r in rows])
        self._sender.submit(pending)
        # Published before the next pass counts the queue, so these copies are counted there.
        await self._sender.flush()
        self.republished += len(pending)
        metrics.JOBS_REPUBLISHED.labels(queue).inc(len(pending))
        log.warning(
            "republished %d Enqueued job(s) of queue %r: %d message(s) missing, none claimed "
            "for %.0f s",
            len(pending),
            queue,
            missing,
            self.republish_after.total_seconds(),
        )
        return len(pending) >= self.batch and missing > self.batch
