"""Group commit for single enqueues: concurrent requests share one transaction.

Each plain request (no idempotency key, no parent) waits for the round that stores it, so it is
still answered only after its job is committed; each round is one statement for all its jobs
(:func:`orchestrator.store.create_plain_jobs`), so a busy API pays one round trip for many jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import store
from orchestrator.batching import Batcher
from orchestrator.outbox import Pending
from orchestrator_api.enqueue import Outcome, Prepared, is_plain, new_job


@dataclass
class _Request:
    prepared: Prepared
    trace: dict[str, str] | None
    done: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    def __init__(
        self,
        engine: AsyncEngine,
        submit: Callable[[list[Pending]], None],
        created: Callable[[list[store.NewJob]], None],
    ) -> None:
        self._engine = engine
        self._submit = submit
        self._created = created
        self._batcher: Batcher[_Request] = Batcher(self._write, name="enqueue-group-commit")

    def start(self) -> None:
        self._batcher.start()

    async def stop(self) -> None:
        await self._batcher.drain()
        await self._batcher.stop()

    @staticmethod
    def accepts(prepared: Prepared) -> bool:
        """Plain requests only: idempotency keys and continuations take the careful path."""
        return is_plain(prepared)

    async def enqueue(self, prepared: Prepared, trace: dict[str, str] | None) -> Outcome:
        request = _Request(prepared, trace)
        self._batcher.submit(request)
        return await request.done

    async def _write(self, requests: list[_Request]) -> None:
        try:
            jobs = [new_job(r.prepared, None, {}, r.trace) for r in requests]
            pending = await store.create_plain_jobs(self._engine, jobs)
        except Exception as exc:
            for request in requests:
                if not request.done.done():
                    request.done.set_exception(exc)
            return
        # Answers first: their requests are resumed before the publish round starts, so the
        # response is not queued behind the broker's socket write.
        for request, job in zip(requests, jobs, strict=True):
            if not request.done.done():
                request.done.set_result(Outcome(job.id, job.state.value))
        self._submit(pending)
        self._created(jobs)
