"""The scheduler role: the only one that turns time into work.

It promotes due delayed jobs (``promotion``) on the replica holding the lease (``leadership``),
and every replica runs the outbox relay: publications the fast path left behind (broker down,
crash between commit and publish) are published here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aio_pika.abc import AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, servers
from orchestrator.broker import Publisher, connect
from orchestrator.db import create_engine
from orchestrator.filters import Filters, JobFilter
from orchestrator.filters import load as load_filters
from orchestrator.loops import Loop, Ops, run_role
from orchestrator.presence import Presence
from orchestrator.settings import Settings
from orchestrator.topology import Topology
from orchestrator_scheduler.delayed import DelayedJobs
from orchestrator_scheduler.gauges import SystemGauges
from orchestrator_scheduler.recurring import RecurringLoop
from orchestrator_scheduler.relay import Relay

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, settings: Settings, filters: Sequence[JobFilter] | None = None) -> None:
        self.settings = settings
        # Filters: given here, else ORCHESTRATOR_FILTERS; they elect and see promotions.
        chosen = list(filters) if filters is not None else load_filters(settings.filters)
        self.filters = Filters(chosen)
        # Promotions and lease expiries are elected; every change runs the built-in hooks.
        self.transitions = composition.transitions(settings.job_retention, self.filters)
        self.info = servers.ServerInfo(role="scheduler")
        self.topology = Topology.of(settings)
        self._connection: AbstractRobustConnection | None = None
        self._publisher: Publisher | None = None
        self._connecting = asyncio.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        engine = create_engine(self.settings.database_url)
        # Time loops run on the lease holder only; see orchestrator_scheduler.delayed.
        delayed = DelayedJobs(
            engine,
            self.info.id,
            self.settings,
            self.topology,
            self._ensure_publisher,
            lambda: self._connection,
            self.transitions,
        )
        gauges = SystemGauges(
            engine,
            self.topology,
            lambda: self._connection,
            delayed.leadership.held,
            self.settings.gauge_interval_seconds,
        )
        try:
            await run_role(
                Presence(engine, self.info, self.settings.heartbeat_seconds),
                delayed.loops([*self.loops(engine), gauges.loop()], stop),
                stop,
                ops=Ops(
                    self.settings.api_host, self.settings.scheduler_ops_port, self._broker_ready
                ),
            )
        finally:
            gauges.stop()
            with contextlib.suppress(Exception):
                await delayed.stop()
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()
            await engine.dispose()

    def loops(self, engine: AsyncEngine) -> list[Loop]:
        relay = Relay(
            engine,
            self._ensure_publisher,
            lambda: self._connection,
            interval=self.settings.outbox_relay_interval_seconds,
            relay_after=self.settings.outbox_relay_after_seconds,
        )
        return [
            Loop("outbox-relay", self.settings.outbox_relay_interval_seconds, relay.tick),
            RecurringLoop(engine, self._ensure_publisher).loop(),
        ]

    async def _ensure_publisher(self) -> Publisher | None:
        # Several loops ask at start; one connection for all of them (a second one would be
        # left open, and at exit it logs a reconnect and leaves aio-pika's tasks pending).
        async with self._connecting:
            return await self._connect_publisher()

    async def _connect_publisher(self) -> Publisher | None:
        if self._publisher is not None:
            return self._publisher
        try:
            self._connection = await connect(self.settings.broker_urls, name=self.info.id)
        except Exception as exc:
            log.warning("RabbitMQ unreachable (%r); outbox entries wait", exc)
            return None
        self._publisher = Publisher(
            self._connection, self.topology, self.settings.publish_timeout_seconds
        )
        return self._publisher

    async def _broker_ready(self) -> dict[str, bool]:
        return {"broker": self._connection is not None and not self._connection.is_closed}
