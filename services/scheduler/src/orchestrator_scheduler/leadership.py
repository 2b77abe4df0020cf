"""One active scheduler at a time: a lease row in the store, by database time.

Each replica tries every ``renew_every`` seconds to take or renew the row ``leases.scheduler``
with one compare-and-set upsert (it succeeds when the row is free, expired, or already ours).
A holder considers itself active only until ``ttl - margin`` seconds after the start of its last
successful renewal, measured on its monotonic clock: a holder that loses its database session
stops acting before its lease can have expired in the store, so before anyone else can take it.
The lease is an optimisation, never the only guard: promotion is a compare-and-set and a
recurring occurrence has a unique index.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator.db import db_now
from orchestrator.store import leadership as store_leadership

log = logging.getLogger(__name__)
NAME = "scheduler"


async def try_acquire(conn: AsyncConnection, name: str, holder: str, ttl: timedelta) -> bool:
    """Take or renew the lease; True when ``holder`` has it until now + ``ttl``."""
    now = await db_now(conn)
    return await store_leadership.take(conn, name, holder, now, now + ttl)


async def release(conn: AsyncConnection, name: str, holder: str) -> None:
    """Give the lease up (clean shutdown), so another replica takes over at its next try."""
    await store_leadership.give_up(conn, name, holder)


class Leadership:
    def __init__(
        self,
        engine: AsyncEngine,
        holder: str,
        *,
        ttl: float = 6.0,
        renew_every: float = 2.0,
        margin: float = 1.0,
        on_gain: Callable[[], None] = lambda: None,
        on_contact: Callable[[bool], None] = lambda ok: None,
        name: str = NAME,
    ) -> None:
        self._engine = engine
        self.holder = holder
        self.ttl = ttl
        self.renew_every = renew_every
        self._margin = margin
        self._on_gain = on_gain
        #: Told after every try whether the store answered (outage detection).
        self._on_contact = on_contact
        self.name = name
        self._valid_until = 0.0

    def held(self) -> bool:
        return time.monotonic() < self._valid_until

    async def tick(self) -> bool:
        """One attempt to take or renew (a :class:`~orchestrator.loops.Loop` tick)."""
        started = time.monotonic()
        was_held = self.held()
        try:
            async with asyncio.timeout(self.renew_every), self._engine.begin() as conn:
                won = await try_acquire(conn, self.name, self.holder, timedelta(seconds=self.ttl))
        except Exception as exc:
            # Nothing to do: ``held()`` lapses by itself before the lease can expire.
            log.warning("could not renew the %s lease: %r", self.name, exc)
            self._on_contact(False)
            return False
        self._on_contact(True)
        self._valid_until = started + self.ttl - self._margin if won else 0.0
        if won and not was_held:
            log.info("%s is now the active %s", self.holder, self.name)
            self._on_gain()
        elif was_held and not won:
            log.warning("%s lost the %s lease", self.holder, self.name)
        return False

    async def release(self) -> None:
        self._valid_until = 0.0
        async with self._engine.begin() as conn:
            await release(conn, self.name, self.holder)
