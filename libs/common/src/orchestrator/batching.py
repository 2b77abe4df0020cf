"""Group work that arrives one item at a time into batches: one transaction for many jobs.

No timer is involved: while one batch is being handled the next one accumulates, so a quiet
system handles items one by one with no added latency and a busy one in large batches. Work that
nobody waits for (deleting published outbox entries) may ``linger``: wait that long after the
first item so that items arriving one at a time share a round trip too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Batcher(Generic[T]):
    def __init__(
        self,
        handle: Callable[[list[T]], Awaitable[None]],
        *,
        name: str,
        max_batch: int = 500,
        linger: float = 0.0,
    ) -> None:
        self._handle = handle
        self._name = name
        self._max_batch = max_batch
        self._linger = linger
        self._items: list[T] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def submit(self, item: T) -> None:
        self._items.append(item)
        self._idle.clear()
        self._wake.set()

    def __len__(self) -> int:
        return len(self._items)

    async def drain(self) -> None:
        """Wait until every item submitted so far has been handled."""
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self._linger and len(self._items) < self._max_batch:
                await asyncio.sleep(self._linger)
            self._wake.clear()
            while self._items:
                batch = self._items[: self._max_batch]
                del self._items[: self._max_batch]
                try:
                    await self._handle(batch)
                except Exception:
                    # Handlers own their errors (retry, give back); this only keeps one bug
                    # from stopping every later batch.
                    log.exception("%s: a batch handler failed", self._name)
            self._idle.set()
