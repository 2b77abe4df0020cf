"""Group commit for single enqueues: concurrent requests share one transaction.

Each plain request (no idempotency key, no parent) waits for the round that stores it, so it is
still answered only after its job is committed; a busy API pays one BEGIN/COMMIT and one insert per
table for many jobs instead of one of each per job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import store
from orchestrator.batching import Batcher
from orchestrator.db import db_now
from orchestrator.outbox import Pending
from orchestrator_api.enqueue import Outcome, Prepared, new_job


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
        request = prepared.request
        return request.idempotency_key is None and request.continue_after is None

    async def enqueue(self, prepared: Prepared, trace: dict[str, str] | None) -> Outcome:
        request = _Request(prepared, trace)
        self._batcher.submit(request)
        return await request.done

    async def _write(self, requests: list[_Request]) -> None:
        try:
            async with self._engine.begin() as conn:
                now = await db_now(conn)
                jobs = [new_job(r.prepared, now, {}, r.trace) for r in requests]
                pending = await store.create_jobs(conn, jobs, now)
        except Exception as exc:
            for request in requests:
                if not request.done.done():
                    request.done.set_exception(exc)
            return
        self._submit(pending)
        self._created(jobs)
        for request, job in zip(requests, jobs, strict=True):
            if not request.done.done():
                request.done.set_result(Outcome(job.id, job.state.value))
