"""Wiring of the scheduler's time loops: the lease, the promoter and its wake-up queue.

Only the lease holder runs the time loops (promotion, recurring jobs, lease expiry, the
reconciliation of lost messages: every loop but the outbox relay, which is safe anywhere).
Each scheduler listens on its own exclusive queue bound to the wake-up fanout, so whichever
holds the lease hears that an earlier delayed job was stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.broker import Publisher
from orchestrator.loops import Loop
from orchestrator.outbox import OutboxSender
from orchestrator.settings import Settings
from orchestrator.topology import Topology, declare_scheduler_wake_queue
from orchestrator.transitions import Transitions
from orchestrator_scheduler.leadership import Leadership
from orchestrator_scheduler.leases import LeaseExpiry, OutageGuard
from orchestrator_scheduler.promotion import Promoter
from orchestrator_scheduler.reconcile import Republisher

log = logging.getLogger(__name__)
#: Loops every replica runs; all others are time loops, run by the lease holder only. The
#: system gauges gate themselves: a replica without the lease must clear them.
UNGATED = frozenset({"outbox-relay", "system-gauges"})


class DelayedJobs:
    def __init__(
        self,
        engine: AsyncEngine,
        holder: str,
        settings: Settings,
        topology: Topology,
        publisher: Callable[[], Awaitable[Publisher | None]],
        connection: Callable[[], AbstractRobustConnection | None],
        transitions: Transitions,
    ) -> None:
        self._topology = topology
        self._publisher = publisher
        self._connection = connection
        self.sender = OutboxSender(engine, None)
        self.sender.start()
        # A silence longer than a heartbeat may have kept workers from renewing their leases.
        self.outage = OutageGuard(
            settings.lease_seconds, silence=max(settings.heartbeat_seconds, 4.0)
        )
        self.leadership = Leadership(
            engine,
            holder,
            on_gain=lambda: self.promoter.wake(),
            on_contact=self.outage.contact,
        )
        self.lease_expiry = LeaseExpiry(
            engine,
            self.sender,
            self.outage,
            transitions,
            lost_limit=settings.worker_lost_limit,
            interval=settings.lease_expiry_interval_seconds,
        )
        self.republisher = Republisher(
            engine,
            self.sender,
            topology,
            connection,
            republish_after=settings.republish_after_seconds,
        )
        self.promoter = Promoter(
            engine,
            self.sender,
            transitions,
            active=self.leadership.held,
            retry_grace=settings.retry_grace_seconds,
        )
        self._queue: AbstractQueue | None = None

    def loops(self, loops: Sequence[Loop], stop: asyncio.Event) -> list[Loop]:
        """``loops`` with the time loops gated on the lease, plus the lease, the promoter and
        the wake-up listener."""
        loops = [*loops, self.lease_expiry.loop(), self.republisher.loop()]
        gated = [loop if loop.name in UNGATED else self._gate(loop) for loop in loops]

        async def promote() -> bool:
            return await self.promoter.tick(stop)

        return [
            *gated,
            Loop("scheduler-lease", self.leadership.renew_every, self.leadership.tick),
            Loop("promote-delayed", 0.0, promote),
            Loop("wake-listener", 2.0, self._listen),
        ]

    def _gate(self, loop: Loop) -> Loop:
        async def tick() -> bool:
            return await loop.tick() if self.leadership.held() else False

        return Loop(loop.name, loop.interval, tick)

    async def _listen(self) -> bool:
        """Start consuming wake-ups once the broker is reachable (then a robust connection
        restores the queue and consumer by itself)."""
        if self._queue is not None:
            return False
        publisher = await self._publisher()
        connection = self._connection()
        if publisher is None or connection is None:
            return False
        self.sender.publisher = publisher
        channel = await connection.channel()
        queue = await declare_scheduler_wake_queue(channel, self._topology)
        await queue.consume(self._woken, no_ack=True)
        self._queue = queue
        return False

    async def _woken(self, message: AbstractIncomingMessage) -> None:
        try:
            due_at = float(json.loads(message.body)["due_at"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed wake-up: %r", message.body[:200])
            return
        self.promoter.hint(due_at)

    async def stop(self) -> None:
        self.promoter.wake()
        await self.sender.stop()
        if self.leadership.held():
            await self.leadership.release()
