"""What the API holds while it runs: the engine, the catalog, the broker link, the sender and
the enqueuer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable, Sequence

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, servers
from orchestrator.broker_link import BrokerLink
from orchestrator.catalog import known_queues
from orchestrator.catalog_cache import CatalogCache
from orchestrator.db import create_engine
from orchestrator.enqueuer import Enqueuer
from orchestrator.filters import Filters, JobFilter
from orchestrator.filters import load as load_filters
from orchestrator.outbox import OutboxSender, Pending
from orchestrator.presence import Presence, store_problem
from orchestrator.scheduler_wake import SchedulerWake
from orchestrator.settings import Settings
from orchestrator_api.consumer_watch import ConsumerWatch

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, filters: Sequence[JobFilter] | None = None) -> None:
        self.settings = settings
        #: Client-side filters: given to create_app, else ORCHESTRATOR_FILTERS.
        self.filters = Filters(filters if filters is not None else load_filters(settings.filters))
        #: A person's deletes and requeues are elected; every change runs the built-in hooks.
        self.transitions = composition.transitions(settings.job_retention, self.filters)
        self.engine: AsyncEngine = create_engine(settings.database_url)
        self.catalog = CatalogCache(self.engine, settings.jobs)
        self.sender = OutboxSender(self.engine, None)
        self.broker = BrokerLink(settings, self.sender)
        #: Which known queues no worker consumes (the enqueue answer's Warning header).
        self.consumers = ConsumerWatch(self.broker, self._known_queues)
        wake = SchedulerWake(self.sender, self.broker.topology)
        #: Creates jobs for every route (group commit for single plain enqueues).
        self.enqueuer = Enqueuer(
            self.engine, settings, self.catalog, self.filters, self.submit, wake
        )
        self.info = servers.ServerInfo(role="api")
        #: In /api/v1/servers like every other instance, store outages survived.
        self.presence = Presence(self.engine, self.info, settings.heartbeat_seconds)

    async def start(self) -> None:
        self.sender.start()
        self.broker.start()
        self.consumers.start()
        self.enqueuer.start()
        # Announce before serving, so /api/v1/servers lists this instance from the first request.
        await self.presence.announce()
        self.presence.start()
        with contextlib.suppress(Exception):
            await self.catalog.refresh()

    async def stop(self) -> None:
        await self.enqueuer.stop()
        await self.presence.stop()
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

    async def signal_cancel(self, job_id: uuid.UUID) -> None:
        """Tell the worker running ``job_id`` to stop it now (it is Deleted already)."""
        publisher = self.sender.publisher
        if publisher is not None:
            await publisher.signal({"cancel": str(job_id)})

    def submit(self, pending: list[Pending]) -> None:
        """Fast path after commit; without a broker the scheduler's relay publishes later."""
        self.sender.submit(pending)

    async def store_reachable(self) -> bool:
        problem = await store_problem(self.engine)
        if problem is not None:
            log.warning("store unreachable", exc_info=problem)
        return problem is None


def runtime_of(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime
