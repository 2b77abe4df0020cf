"""System-wide gauges the lease-holding scheduler samples: queue depth and consumers as RabbitMQ
reports them, and the heartbeat age of every registered server.

They describe the whole system, not this process, so exactly one process reports them; otherwise
``sum(orchestrator_queue_depth)`` (the autoscaler's trigger) would count each queue once per
replica. That process is the scheduler holding the lease. A replica without the lease clears
them, so a former holder stops reporting within one interval of losing the lease.

The queues sampled are those of the catalog (each job's default queue) and those a registered
server consumes: both tables are small, unlike a ``DISTINCT`` over the jobs. Label cardinality:
one ``queue`` series per such queue; one heartbeat series per row of the servers table, rebuilt
at every sample, so a server that withdrew or that the janitor forgot (silent for ten heartbeats,
at least 60 s) disappears.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import metrics
from orchestrator.db import db_now
from orchestrator.loops import Loop
from orchestrator.store import registrations as store_registrations
from orchestrator.store import servers as store_servers
from orchestrator.topology import Topology, queue_depth

log = logging.getLogger(__name__)
#: A broker that does not answer a passive declare within this long is left unsampled.
_DEPTH_TIMEOUT = 2.0
NAME = "system-gauges"


async def sampled_queues(conn: AsyncConnection) -> set[str]:
    """The catalog's queues and the queues registered servers consume."""
    queues = await store_registrations.queues(conn)
    queues.update(await store_servers.consumed_queues(conn))
    return queues


def set_heartbeat_ages(rows: Iterable[Any], now: datetime) -> None:
    """Replace every heartbeat series by the rows given (id, role, heartbeat_at)."""
    metrics.SERVER_HEARTBEAT_AGE.clear()
    for row in rows:
        age = max(0.0, (now - row.heartbeat_at).total_seconds())
        metrics.SERVER_HEARTBEAT_AGE.labels(row.role, row.id).set(age)


def set_queue_depths(depths: dict[str, tuple[int, int]]) -> None:
    """Replace every queue series by ``depths`` (queue → ready, consumers)."""
    metrics.QUEUE_DEPTH.clear()
    metrics.QUEUE_CONSUMERS.clear()
    for queue, (ready, consumers) in depths.items():
        metrics.QUEUE_DEPTH.labels(queue).set(ready)
        metrics.QUEUE_CONSUMERS.labels(queue).set(consumers)


def clear() -> None:
    metrics.QUEUE_DEPTH.clear()
    metrics.QUEUE_CONSUMERS.clear()
    metrics.SERVER_HEARTBEAT_AGE.clear()


class SystemGauges:
    """Samples the gauges every ``interval`` seconds while ``active()`` (the lease is held)."""

    def __init__(
        self,
        engine: AsyncEngine,
        topology: Topology,
        connection: Callable[[], AbstractRobustConnection | None],
        active: Callable[[], bool],
        interval: float,
    ) -> None:
        self._engine = engine
        self._topology = topology
        self._connection = connection
        self._active = active
        self.interval = interval

    def loop(self) -> Loop:
        return Loop(NAME, self.interval, self.tick)

    def stop(self) -> None:
        """A stopping scheduler gives up the lease: its last sample must not outlive it."""
        clear()

    async def tick(self) -> bool:
        if not self._active():
            clear()
            return False
        try:
            async with self._engine.connect() as conn:
                now = await db_now(conn)
                servers = await store_servers.heartbeats(conn)
                queues = await sampled_queues(conn)
        except Exception:
            clear()  # a stale sample would look like a healthy system
            raise
        set_heartbeat_ages(servers, now)
        set_queue_depths(await self.depths(sorted(queues)))
        return False

    async def depths(self, queues: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(ready, consumers) of each queue RabbitMQ answered for; none when disconnected."""
        connection = self._connection()
        if connection is None or connection.is_closed:
            return {}
        found = {}
        for queue in queues:
            try:
                async with asyncio.timeout(_DEPTH_TIMEOUT):
                    # A fresh channel each time: a failed passive declare closes its channel.
                    channel = await connection.channel()
                    try:
                        found[queue] = await queue_depth(channel, self._topology, queue)
                    finally:
                        if not channel.is_closed:
                            await channel.close()
            except Exception:
                log.debug("depth of queue %r unavailable", queue, exc_info=True)
        return found
