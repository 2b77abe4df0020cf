"""The outbox relay: publishes what the fast path left behind, backing off while RabbitMQ is down.

Every scheduler replica runs it once per ``ORCHESTRATOR_OUTBOX_RELAY_INTERVAL_SECONDS``. While
the broker cannot be reached, each try costs a connection attempt or a publish that waits out
its timeout with the entries row-locked, so after a failure the relay waits ``interval·2^(n-1)``
seconds (at most ``MAX_BACKOFF_SECONDS``) before the n+1-th try. When aio-pika has reconnected by
itself meanwhile, the relay does not wait out the rest: the entries go as soon as they can.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aio_pika.abc import AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import metrics, outbox
from orchestrator.broker import Publisher

log = logging.getLogger(__name__)

#: The longest pause between two relay tries while RabbitMQ stays down.
MAX_BACKOFF_SECONDS = 30.0
#: A tick that sent this many entries runs again at once (the batch limit of ``relay_once``).
FULL_BATCH = 500


class Backoff:
    """Capped exponential backoff: ``base·2^(n-1)`` seconds after the n-th failure in a row."""

    def __init__(
        self, base: float, cap: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.base = base
        self.cap = cap
        self.clock = clock
        self.failures = 0
        self._next_try = 0.0

    def ready(self) -> bool:
        return self.clock() >= self._next_try

    def failed(self) -> float:
        """Count a failure; returns the pause before the next try."""
        self.failures += 1
        pause = min(self.cap, math.ldexp(self.base, self.failures - 1))
        self._next_try = self.clock() + pause
        return pause

    def succeeded(self) -> None:
        self.failures = 0
        self._next_try = 0.0


class Relay:
    """One relay tick per call: ``Loop("outbox-relay", interval, relay.tick)``."""

    def __init__(
        self,
        engine: AsyncEngine,
        ensure_publisher: Callable[[], Awaitable[Publisher | None]],
        connection: Callable[[], AbstractRobustConnection | None],
        *,
        interval: float,
        relay_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._ensure_publisher = ensure_publisher
        self._connection = connection
        self._older_than = timedelta(seconds=relay_after)
        self.backoff = Backoff(interval, MAX_BACKOFF_SECONDS, clock)
        #: Whether the last failure found the connection closed (aio-pika then reconnects).
        self._failed_while_closed = False
        #: Tries made (each a connection attempt or a publish round), for tests and logs.
        self.tries = 0

    def _connection_open(self) -> bool:
        """Connected now (a robust connection stays "not closed" while it reconnects)."""
        connection = self._connection()
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    def _due(self) -> bool:
        if self.backoff.ready():
            return True
        return self._failed_while_closed and self._connection_open()

    async def tick(self) -> bool:
        if not self._due():
            return False
        self.tries += 1
        publisher = await self._ensure_publisher()
        if publisher is None or not self._connection_open():
            self._failed(closed=publisher is not None)
            return False
        try:
            sent, unsent = await outbox.relay_once(
                self._engine, publisher, older_than=self._older_than
            )
        except Exception:
            if not self._connection_open():  # else the store failed; the loop logs it
                self._failed(closed=True)
            raise
        if unsent and not sent:  # the broker took none: down, or hanging
            self._failed(closed=not self._connection_open())
        else:
            self.backoff.succeeded()
        if sent:
            metrics.OUTBOX_PUBLISHED.labels("relay").inc(sent)
            log.info("relay published %d outbox entries", sent)
        async with self._engine.connect() as conn:
            metrics.OUTBOX_BACKLOG.set(await outbox.backlog(conn))
        return sent >= FULL_BATCH

    def _failed(self, *, closed: bool) -> None:
        self._failed_while_closed = closed
        pause = self.backoff.failed()
        log.warning(
            "outbox relay: RabbitMQ unavailable (%d failures in a row); next try in %.1f s",
            self.backoff.failures,
            pause,
        )
