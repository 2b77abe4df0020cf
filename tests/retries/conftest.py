"""A worker over the retry/timeout test jobs, and helpers to enqueue and read jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from orchestrator import outbox, store
from orchestrator.broker import JobMessage, Publisher, connect
from orchestrator.catalog import Catalog
from orchestrator.db import create_engine, db_now
from orchestrator.filters import JobFilter
from orchestrator.settings import Settings
from orchestrator.topology import Topology
from orchestrator_worker.worker import Worker
from tests.api.conftest import start_api  # noqa: F401 - the API fixture, for the filter tests

CATALOG = Catalog.from_modules(["tests.retries.jobs"])


def new_job(name: str, *args: Any, **fields: Any) -> store.NewJob:
    function = CATALOG.get(name)
    assert function is not None
    defaults = {"retries": function.spec.retries, "timeout_seconds": function.spec.timeout}
    return store.NewJob(
        name=name, queue="default", args=list(args), kwargs={}, **(defaults | fields)
    )


async def enqueue(settings: Settings, jobs: list[store.NewJob]) -> list[uuid.UUID]:
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            pending = await store.create_jobs(conn, jobs, await db_now(conn))
        await publish(settings, [p.message for p in pending])
        async with engine.begin() as conn:
            await outbox.record_results(conn, pending, [True] * len(pending))
        return [j.id for j in jobs]
    finally:
        await engine.dispose()


async def publish(settings: Settings, messages: list[JobMessage]) -> None:
    connection = await connect(settings.amqp_url, name="test-publish")
    try:
        publisher = Publisher(connection, Topology(settings.broker_namespace), 5)
        assert all(await publisher.publish(messages))
    finally:
        await connection.close()


async def read(settings: Settings, job_id: uuid.UUID) -> tuple[sa.Row[Any], list[sa.Row[Any]]]:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            return await store.get_job(conn, job_id), await store.get_history(conn, job_id)
    finally:
        await engine.dispose()


async def wait_for(
    settings: Settings, job_id: uuid.UUID, states: set[str], timeout: float = 20
) -> tuple[sa.Row[Any], list[sa.Row[Any]]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row, history = await read(settings, job_id)
        if row.state in states:
            return row, history
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job is {row.state}, not {states}: {[h.reason for h in history]}")
        await asyncio.sleep(0.05)


StartWorker = Callable[..., Any]


@pytest.fixture
async def start_worker(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Any]]:
    """Start a worker on a given database (and filters); stopped at the end of the test."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(
        database_url: str, filters: list[JobFilter] | None = None, **overrides: Any
    ) -> Settings:
        values: dict[str, Any] = {"worker_ops_port": 0, "worker_concurrency": 4}
        settings = make_settings(database_url, **(values | overrides))
        worker = Worker(settings, CATALOG, shutdown_grace=5, filters=filters)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        running.append((stop, task))
        await asyncio.wait_for(worker.ready.wait(), 20)
        return settings

    yield start
    for stop, task in running:
        stop.set()
        await asyncio.wait_for(task, 30)
