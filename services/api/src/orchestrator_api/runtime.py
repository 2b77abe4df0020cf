"""What the API holds while it runs: the engine, the catalog, the broker link and the sender."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import servers
from orchestrator.catalog import known_queues
from orchestrator.db import create_engine
from orchestrator.filters import Created, Filters, JobFilter
from orchestrator.filters import load as load_filters
from orchestrator.outbox import OutboxSender, Pending
from orchestrator.settings import Settings
from orchestrator.store import NewJob
from orchestrator_api.broker_link import BrokerLink
from orchestrator_api.catalog_cache import CatalogCache
from orchestrator_api.consumer_watch import ConsumerWatch
from orchestrator_api.group_commit import GroupCommit
from orchestrator_api.scheduler_wake import SchedulerWake

log = logging.getLogger(__name__)
_READY_TIMEOUT = 2.0


class Runtime:
    def __init__(self, settings: Settings, filters: Sequence[JobFilter] | None = None) -> None:
        self.settings = settings
        #: Client-side filters: given to create_app, else ORCHESTRATOR_FILTERS.
        self.filters = Filters(filters if filters is not None else load_filters(settings.filters))
        self._hooks: set[asyncio.Task[None]] = set()
        self.engine: AsyncEngine = create_engine(settings.database_url)
        self.catalog = CatalogCache(self.engine, settings.jobs)
        self.sender = OutboxSender(self.engine, None)
        self.broker = BrokerLink(settings, self.sender)
        #: Which known queues no worker consumes (the enqueue answer's Warning header).
        self.consumers = ConsumerWatch(self.broker, self._known_queues)
        self.wake = SchedulerWake(self.sender, self.broker.topology)
        self.group_commit = GroupCommit(self.engine, self.submit, self.created)
        self.info = servers.ServerInfo(role="api")
        self._presence: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.sender.start()
        self.broker.start()
        self.consumers.start()
        self.group_commit.start()
        # Announce before serving, so /api/v1/servers lists this instance from the first request.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(servers.announce(self.engine, self.info), _READY_TIMEOUT)
        self._presence = asyncio.create_task(self._heartbeat(), name="api-heartbeat")
        with contextlib.suppress(Exception):
            await self.catalog.refresh()

    async def stop(self) -> None:
        await self.group_commit.stop()
        if self._presence is not None:
            self._presence.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._presence
        with contextlib.suppress(Exception):
            await servers.withdraw(self.engine, self.info)
        # Publish what was submitted while the connection is still open, then close it.
        try:
            await asyncio.wait_for(self.sender.stop(), 10)
        except Exception:
            log.warning("outbox sender did not finish; the relay will publish the rest")
        await self.consumers.stop()
        await self.broker.stop()
        await self.engine.dispose()

    async def _known_queues(self) -> Iterable[str]:
        return known_queues(await self.catalog.all(), self.settings.queues)

    async def _heartbeat(self) -> None:
        """Appear in /api/v1/servers like every other instance; survive store outages."""
        while True:
            try:
                await servers.heartbeat(self.engine, self.info)
            except Exception:
                log.warning("heartbeat to the store failed", exc_info=True)
            await asyncio.sleep(self.settings.heartbeat_seconds)

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
        try:
            async with asyncio.timeout(_READY_TIMEOUT), self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:
            log.warning("store unreachable", exc_info=True)
            return False
        return True


def runtime_of(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime
