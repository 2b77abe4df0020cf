"""The API's job catalog: registrations workers stored, plus jobs from modules it imports itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from orchestrator.catalog import Catalog, Registration, load_registrations
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


class CatalogCache:
    """Stored registrations are re-read every ``max_age`` seconds, or when a name is unknown
    (at most once per ``miss_interval`` seconds, so unknown names cannot flood the store)."""

    def __init__(
        self,
        engine: AsyncEngine,
        modules: Iterable[str],
        *,
        max_age: float = 5.0,
        miss_interval: float = 1.0,
    ) -> None:
        self._engine = engine
        self._local = {reg.name: reg for reg in Catalog.from_modules(list(modules)).registrations()}
        self._stored: dict[str, Registration] = {}
        self._loaded_at = float("-inf")
        self._max_age = max_age
        self._miss_interval = miss_interval
        self._lock = asyncio.Lock()

    def _merged(self) -> dict[str, Registration]:
        # Workers' registrations win: they describe the code that will run the job.
        return {**self._local, **self._stored}

    async def refresh(self) -> None:
        async with self._lock:
            async with self._engine.connect() as conn:
                self._stored = await load_registrations(conn)
            self._loaded_at = time.monotonic()

    async def _refresh_if(self, older_than: float) -> None:
        if time.monotonic() - self._loaded_at >= older_than:
            try:
                await self.refresh()
            except Exception:
                log.warning("could not load job registrations from the store", exc_info=True)

    async def all(self) -> dict[str, Registration]:
        await self._refresh_if(self._max_age)
        return self._merged()

    async def lookup(self, names: Iterable[str]) -> dict[str, Registration]:
        """The registrations of ``names`` that exist; unknown ones trigger one refresh."""
        wanted = set(names)
        await self._refresh_if(self._max_age)
        known = self._merged()
        if not wanted <= known.keys():
            await self._refresh_if(self._miss_interval)
            known = self._merged()
        return {name: known[name] for name in wanted if name in known}
