"""An instance's presence in the store: announced at start, refreshed every heartbeat, withdrawn
at stop; and the store probe every role's readiness starts with.

Every role uses this one implementation: the scheduler, janitor and worker through
:func:`orchestrator.loops.run_role`, the API (whose event loop uvicorn owns) directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import servers

log = logging.getLogger(__name__)
#: Bound on a store probe and on a single announce, connecting included: a stalled store must
#: not hang a readiness probe or an API's start.
PROBE_SECONDS = 2.0
#: Bound on the withdrawal at stop: a store that stopped answering must not keep a stopping
#: process alive (the janitor forgets the record once its heartbeat is old).
_WITHDRAW_SECONDS = 5.0
_ANNOUNCE_RETRY_SECONDS = 2.0


async def store_problem(engine: AsyncEngine) -> Exception | None:
    """Why the store does not answer ``SELECT 1`` within :data:`PROBE_SECONDS`, or None."""

    async def select_one() -> None:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    try:
        await asyncio.wait_for(select_one(), PROBE_SECONDS)
    except Exception as exc:
        return exc
    return None


async def store_reachable(engine: AsyncEngine) -> bool:
    return await store_problem(engine) is None


class Presence:
    """This instance's record in the ``servers`` table.

    ``renew`` runs first in every heartbeat (the worker renews its jobs' leases there, so they
    live exactly as long as the heartbeat does); ``written`` is told after each heartbeat the
    store took.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        info: servers.ServerInfo,
        interval: float,
        *,
        renew: Callable[[], Awaitable[None]] | None = None,
        written: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.info = info
        self.interval = interval
        self._renew = renew
        self._written = written
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def announce(self, stop: asyncio.Event | None = None) -> bool:
        """Write the record; whether it was written. With ``stop``, try every 2 s until it is
        written or ``stop`` is set (a role's loops wait for the store); without, try once within
        :data:`PROBE_SECONDS` (the API serves anyway; its heartbeat announces it later)."""
        if stop is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(servers.announce(self.engine, self.info), PROBE_SECONDS)
                return True
            return False
        while not stop.is_set():
            try:
                await servers.announce(self.engine, self.info)
                return True
            except Exception as exc:
                log.warning("store unreachable at start (%r); retrying in 2 s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _ANNOUNCE_RETRY_SECONDS)
        return False

    def start(self) -> None:
        """Heartbeat every ``interval`` seconds (the first one now) until :meth:`stop`."""
        self._task = asyncio.create_task(self._beat_forever(), name="heartbeat")

    async def stop(self) -> None:
        """End the heartbeat (a beat under way may finish within :data:`PROBE_SECONDS`, else it
        is cancelled: the store may hang), then withdraw the record."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), PROBE_SECONDS)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(servers.withdraw(self.engine, self.info), _WITHDRAW_SECONDS)

    async def _beat_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.beat()
            except Exception:
                # Store outages included: the next beat is the retry.
                log.exception("heartbeat failed; next try in %.1f s", self.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    async def beat(self) -> None:
        if self._renew is not None:
            await self._renew()
        await servers.heartbeat(self.engine, self.info)
        if self._written is not None:
            self._written()
