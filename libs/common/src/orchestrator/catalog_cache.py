"""The API's job catalog: registrations workers stored, plus jobs from modules it imports itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.catalog import Catalog, Registration, known_queues
from orchestrator.errors import UnknownQueueError
from orchestrator.store import registrations as store_registrations

log = logging.getLogger(__name__)


class CatalogCache:
    """Stored registrations are re-read every ``max_age`` seconds and whenever a name is unknown;
    concurrent misses share one read (a read that started after a request arrived serves it)."""

    def __init__(self, engine: AsyncEngine, modules: Iterable[str], *, max_age: float = 5.0):
        self._engine = engine
        self._local = {reg.name: reg for reg in Catalog.from_modules(list(modules)).registrations()}
        self._stored: dict[str, Registration] = {}
        self._loaded_at = float("-inf")
        self._max_age = max_age
        self._lock = asyncio.Lock()

    def _merged(self) -> dict[str, Registration]:
        # Workers' registrations win: they describe the code that will run the job.
        return {**self._local, **self._stored}

    async def refresh(self) -> None:
        await self._refresh_since(time.monotonic())

    async def _refresh_since(self, asked_at: float) -> None:
        async with self._lock:
            if self._loaded_at >= asked_at:
                return
            started = time.monotonic()
            async with self._engine.connect() as conn:
                self._stored = await store_registrations.newest(conn)
            self._loaded_at = started

    async def _try_refresh(self, asked_at: float) -> None:
        try:
            await self._refresh_since(asked_at)
        except Exception:
            log.warning("could not load job registrations from the store", exc_info=True)

    async def all(self) -> dict[str, Registration]:
        now = time.monotonic()
        if now - self._loaded_at >= self._max_age:
            await self._try_refresh(now)
        return self._merged()

    async def require_queue(self, queue: str, extra: Iterable[str]) -> None:
        """Refuse a queue that is not known (``catalog.known_queues``); an unknown one makes
        it read again, as a worker may just have registered a job of that queue."""
        if queue in known_queues(await self.all(), extra):
            return
        await self._try_refresh(time.monotonic())
        known = known_queues(self._merged(), extra)
        if queue not in known:
            raise UnknownQueueError(queue, known)

    async def lookup(self, names: Iterable[str]) -> dict[str, Registration]:
        """The registrations of ``names`` that exist; an unknown name makes it read again."""
        wanted = set(names)
        known = await self.all()
        if not wanted <= known.keys():
            await self._try_refresh(time.monotonic())
            known = self._merged()
        return {name: known[name] for name in wanted if name in known}
