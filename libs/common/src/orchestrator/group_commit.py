"""Group commit, the :class:`~orchestrator.enqueuer.Enqueuer`'s strategy for single plain
enqueues: concurrent requests share one write.

Each plain request (no idempotency key, no parent) waits for the round that stores it, so it is
still answered only after its job is committed; each round is one statement for all its jobs
(:func:`orchestrator.enqueue_writes.store_plain`), so a busy API pays one round trip for many jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from orchestrator.batching import Batcher
from orchestrator.enqueue_writes import Outcome, Stored
from orchestrator.enqueueing import Prepared

Item = tuple[Prepared, dict[str, str] | None]


@dataclass
class _Request:
    prepared: Prepared
    trace: dict[str, str] | None
    done: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    """Rounds of ``write`` (one commit each); ``committed`` runs after each round's answers."""

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Awaitable[Stored]],
        committed: Callable[[Stored], None],
    ) -> None:
        self._write_items = write
        self._committed = committed
        self._batcher: Batcher[_Request] = Batcher(self._write, name="enqueue-group-commit")

    def start(self) -> None:
        self._batcher.start()

    async def stop(self) -> None:
        await self._batcher.drain()
        await self._batcher.stop()

    async def enqueue(self, prepared: Prepared, trace: dict[str, str] | None) -> Outcome:
        request = _Request(prepared, trace)
        self._batcher.submit(request)
        return await request.done

    async def _write(self, requests: list[_Request]) -> None:
        try:
            stored = await self._write_items([(r.prepared, r.trace) for r in requests])
        except Exception as exc:
            for request in requests:
                if not request.done.done():
                    request.done.set_exception(exc)
            return
        # Answers first: their requests are resumed before the publish round starts, so the
        # response is not queued behind the broker's socket write.
        for request, outcome in zip(requests, stored.outcomes, strict=True):
            if not request.done.done():
                request.done.set_result(outcome)
        self._committed(stored)
