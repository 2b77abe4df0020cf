"""What the API holds while it runs: the engine, the catalog, the broker link and the sender."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, servers
from orchestrator.db import create_engine
from orchestrator.filters import Created, Filters, JobFilter
from orchestrator.filters import load as load_filters
from orchestrator.outbox import OutboxSender, Pending
from orchestrator.presence import Presence, store_problem
from orchestrator.settings import Settings
from orchestrator.store import NewJob
from orchestrator_api.broker_link import BrokerLink
from orchestrator_api.catalog_cache import CatalogCache
from orchestrator_api.group_commit import GroupCommit
from orchestrator_api.scheduler_wake import SchedulerWake

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, filters: Sequence[JobFilter] | None = None) -> None:
        self.settings = settings
        #: Client-side filters: given to create_app, else ORCHESTRATOR_FILTERS.
        self.filters = Filters(filters if filters is not None else load_filters(settings.filters))
        #: A person's deletes and requeues are elected; every change runs the built-in hooks.
        self.transitions = composition.transitions(settings.job_retention, self.filters)
        self._hooks: set[asyncio.Task[None]] = set()
        self.engine: AsyncEngine = create_engine(settings.database_url)
        self.catalog = CatalogCache(self.engine, settings.jobs)
        self.sender = OutboxSender(self.engine, None)
        self.broker = BrokerLink(settings, self.sender)
        self.wake = SchedulerWake(self.sender, self.broker.topology)
        self.group_commit = GroupCommit(self.engine, self.submit, self.created)
        self.info = servers.ServerInfo(role="api")
        #: In /api/v1/servers like every other instance, store outages survived.
        self.presence = Presence(self.engine, self.info, settings.heartbeat_seconds)

    async def start(self) -> None:
        self.sender.start()
        self.broker.start()
        self.group_commit.start()
        # Announce before serving, so /api/v1/servers lists this instance from the first request.
        await self.presence.announce()
        self.presence.start()
        with contextlib.suppress(Exception):
            await self.catalog.refresh()

    async def stop(self) -> None:
        await self.group_commit.stop()
        await self.presence.stop()
        # Publish what was submitted while the connection is still open, then close it.
        try:
            await asyncio.wait_for(self.sender.stop(), 10)
        except Exception:
            log.warning("outbox sender did not finish; the relay will publish the rest")
        await self.broker.stop()
        await self.engine.dispose()

    async def signal_cancel(self, job_id: uuid.UUID) -> None:
        """Tell the worker running ``job_id`` to stop it now (it is Deleted already)."""
        publisher = self.sender.publisher
        if publisher is not None:
            await publisher.signal({"cancel": str(job_id)})

    def submit(self, pending: list[Pending]) -> None:
        """Fast path after commit; without a broker the scheduler's relay publishes later."""
        self.sender.submit(pending)

    def created(self, jobs: Sequence[NewJob]) -> None:
        """After commit: count the new jobs; wake the schedulers for an earlier delayed one;
        run the filters' ``created`` hooks (in the background: the answer does not wait)."""
        self.wake.created(jobs)
        if self.filters and jobs:
            task = asyncio.create_task(self._run_created(jobs), name="filters-created")
            self._hooks.add(task)
            task.add_done_callback(self._hooks.discard)

    async def _run_created(self, jobs: Sequence[NewJob]) -> None:
        for job in jobs:
            parameters = job.options.get("parameters", {})
            context = Created(job.id, job.name, job.queue, job.state.value, parameters)
            try:
                await self.filters.created(context)
            except Exception:
                log.exception("a filter's created hook failed for job %s", job.id)

    async def store_reachable(self) -> bool:
        problem = await store_problem(self.engine)
        if problem is not None:
            log.warning("store unreachable", exc_info=problem)
        return problem is None


def runtime_of(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime
