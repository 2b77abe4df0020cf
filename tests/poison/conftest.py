"""A real worker (in this process) over the poison jobs, and helpers to create and read jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from orchestrator import store
from orchestrator.catalog import Catalog
from orchestrator.db import create_engine
from orchestrator.settings import Settings
from orchestrator_worker.worker import Worker
from tests.api.conftest import api, start_api  # noqa: F401 - the API fixtures, for the reads
from tests.poison import jobs
from tests.retries.conftest import enqueue, read

CATALOG = Catalog.from_modules(["tests.poison.jobs"])


def new_job(name: str, *args: Any, **fields: Any) -> store.NewJob:
    function = CATALOG.get(name)
    assert function is not None
    values: dict[str, Any] = {"retries": function.spec.retries, **fields}
    return store.NewJob(name=name, queue="default", args=list(args), kwargs={}, **values)


async def states_of(settings: Settings, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            table = store.jobs_table
            query = sa.select(table.c.id, table.c.state).where(table.c.id.in_(list(ids)))
            return {row.id: row.state for row in await conn.execute(query)}
    finally:
        await engine.dispose()


async def wait_all(
    settings: Settings, ids: list[uuid.UUID], states: set[str], timeout: float = 60
) -> None:
    """Until every job is in one of ``states`` (polling the store)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        seen = await states_of(settings, ids)
        if all(seen.get(i) in states for i in ids):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not all {states}: {sorted(seen.values())}")
        await asyncio.sleep(0.05)


@dataclass
class Running:
    worker: Worker
    settings: Settings


@pytest.fixture
async def start_worker(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Any]]:
    """Start a worker on a given database; stopped (and the held jobs released) at the end."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    jobs.RELEASE.clear()

    async def start(database_url: str, **overrides: Any) -> Running:
        values: dict[str, Any] = {"worker_ops_port": 0, "worker_concurrency": 32}
        settings = make_settings(database_url, **(values | overrides))
        worker = Worker(settings, CATALOG, shutdown_grace=5)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        running.append((stop, task))
        await asyncio.wait_for(worker.ready.wait(), 20)
        return Running(worker, settings)

    yield start
    jobs.RELEASE.set()
    for stop, task in running:
        stop.set()
        await asyncio.wait_for(task, 30)


__all__ = ["CATALOG", "enqueue", "new_job", "read", "states_of", "wait_all"]
