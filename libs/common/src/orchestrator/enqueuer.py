"""The :class:`Enqueuer`: the one object that creates jobs, whatever the API's route, and in a
:class:`~orchestrator.direct.DirectClient`.

The checks and writes are :mod:`orchestrator.enqueueing` and :mod:`orchestrator.enqueue_writes`;
this adds how a publishing process runs them. A single plain enqueue (no idempotency key, no
parent) joins a group-commit round (:class:`~orchestrator.group_commit.GroupCommit`: concurrent
requests, one statement);
everything else is one transaction per call. After each commit the Enqueuer hands the outbox
entries to the sender (the fast path), counts the jobs and wakes the schedulers for an earlier
delayed one (:class:`~orchestrator.scheduler_wake.SchedulerWake`), and runs the filters'
``created`` hooks in the background (the answer does not wait for them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import enqueue_writes, enqueueing, store
from orchestrator.enqueue_writes import Outcome, Stored, StoredBatch
from orchestrator.enqueueing import (
    Checks,
    JobRequest,
    Prepared,
    Registrations,
    check_arguments,
    is_plain,
)
from orchestrator.filters import Created, Filters
from orchestrator.group_commit import GroupCommit
from orchestrator.outbox import Pending
from orchestrator.scheduler_wake import SchedulerWake
from orchestrator.settings import Settings
from orchestrator.tracing import current_headers

__all__ = ["Enqueuer", "Outcome", "Prepared", "check_arguments"]
log = logging.getLogger(__name__)


class Enqueuer:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        registrations: Registrations,
        filters: Filters,
        submit: Callable[[list[Pending]], None],
        wake: SchedulerWake,
    ) -> None:
        self._engine = engine
        self._checks = Checks(registrations, filters, settings, settings.queues)
        self._filters = filters
        self._submit = submit
        self._wake = wake
        self._rounds = GroupCommit(self._write_round, self._committed)
        self._hooks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._rounds.start()

    async def stop(self) -> None:
        await self._rounds.stop()

    async def prepare(self, requests: Sequence[JobRequest], *, bulk: bool) -> list[Prepared]:
        """Every check that needs no store (422 naming the job's index inside a bulk)."""
        return await enqueueing.prepare(self._checks, requests, bulk=bulk)

    async def one(self, prepared: Prepared) -> Outcome:
        """One job: a group-commit round when plain, else its own transaction."""
        if is_plain(prepared):
            return await self._rounds.enqueue(prepared, current_headers() or None)
        (outcome,) = await self.many([prepared])
        return outcome

    async def many(self, prepared: Sequence[Prepared]) -> list[Outcome]:
        """Every job of one call in one transaction (one statement when all are plain)."""
        stored = await enqueue_writes.store_jobs(self._engine, prepared, current_headers() or None)
        self._committed(stored)
        return stored.outcomes

    async def batch(
        self, members: Sequence[JobRequest], on_complete: JobRequest | None
    ) -> StoredBatch:
        """A batch's members and its continuation, checked, then stored in one transaction."""
        prepared, continuation = await enqueueing.prepare_batch(self._checks, members, on_complete)
        trace = current_headers() or None
        stored = await enqueue_writes.store_batch(self._engine, prepared, continuation, trace)
        self._committed(stored)
        return stored

    async def _write_round(self, items: Sequence[tuple[Prepared, dict[str, str] | None]]) -> Stored:
        return await enqueue_writes.store_plain(self._engine, items)

    def _committed(self, stored: Stored) -> None:
        """After commit: publish (the fast path; without a broker the scheduler's relay
        publishes later), count the new jobs, wake the schedulers for an earlier delayed one,
        and run the filters' ``created`` hooks in the background."""
        self._submit(stored.pending)
        jobs = stored.jobs
        self._wake.created(jobs)
        if self._filters and jobs:
            task = asyncio.create_task(self._run_created(jobs), name="filters-created")
            self._hooks.add(task)
            task.add_done_callback(self._hooks.discard)

    async def _run_created(self, jobs: Sequence[store.NewJob]) -> None:
        for job in jobs:
            parameters = job.options.get("parameters", {})
            context = Created(job.id, job.name, job.queue, job.state.value, parameters)
            try:
                await self._filters.created(context)
            except Exception:
                log.exception("a filter's created hook failed for job %s", job.id)
