"""DirectClient: a producer that writes its jobs to the store and publishes them itself.

The jobs run on a real worker with no API and no scheduler running (so nobody but the client
can have published them), and they are the same jobs, history and checks as through the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchestrator import JobCall
from orchestrator.db import create_engine
from orchestrator.direct import AsyncDirectClient, DirectClient
from orchestrator.errors import (
    ConflictError,
    JobFailedError,
    JobValidationError,
)
from orchestrator.settings import Settings
from tests import worker_jobs
from tests.support.system import System

pytestmark = pytest.mark.e2e


@pytest.fixture
def system(database_url: str, amqp_url: str, tmp_path: Path) -> Iterator[System]:
    """A worker alone once the catalog is stored (the API only waits for it, then stops)."""
    running = System(
        database_url=database_url, jobs="tests.worker_jobs", amqp_url=amqp_url, log_dir=tmp_path
    )
    try:
        running.start("api", "api")
        running.start("worker", "worker", "--queues", "default", "--concurrency", "4")
        running.wait_for_catalog("tests.add")
        running.stop("api")
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def client(system: System) -> Iterator[DirectClient]:
    settings = Settings(
        database_url=system.database_url,
        amqp_url=system.amqp_url,
        broker_namespace=system.namespace,
        queues=["low", "other", "bench"],
    )
    with DirectClient(settings) as direct:
        yield direct


def _entries_of_enqueues(database_url: str) -> int:
    """Outbox entries written by an enqueue (with their job, so stamped with its creation time;
    the worker's own entries, for deliveries it hands back, come later)."""

    async def count() -> int:
        engine = create_engine(database_url)
        query = sa.text(
            "SELECT count(*) FROM outbox JOIN jobs ON jobs.id = outbox.job_id "
            "WHERE outbox.created_at = jobs.created_at"
        )
        try:
            async with engine.connect() as conn:
                return int(await conn.scalar(query) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(count())


def test_jobs_run_without_the_api_or_the_scheduler(client: DirectClient) -> None:
    job_id = client.enqueue(worker_jobs.add.call(2, 3))
    assert client.wait(job_id, timeout=30) == 5
    job = client.get(job_id)
    assert [h["state"] for h in job["history"]] == ["Enqueued", "Processing", "Succeeded"]

    ids = client.enqueue_many([worker_jobs.add.call(i, i) for i in range(20)])
    assert [client.wait(i, timeout=30) for i in ids] == [2 * i for i in range(20)]

    then = client.continue_with(job_id, JobCall.named("tests.add", 1, 1))
    assert client.wait(then, timeout=30) == 2
    batch = client.batch(
        [worker_jobs.add.call(1, 2), worker_jobs.add.call(3, 4)],
        on_complete=worker_jobs.add.call(0, 0),
    )
    assert [client.wait(i, timeout=30) for i in batch["job_ids"]] == [3, 7]
    assert batch["continuation_id"] is not None
    assert client.wait(batch["continuation_id"], timeout=30) == 0

    failed = client.enqueue(worker_jobs.boom.call("bad input"))
    with pytest.raises(JobFailedError):
        client.wait(failed, timeout=30)


def test_committed_jobs_are_published_before_close_returns(
    system: System, client: DirectClient
) -> None:
    ids = [client.enqueue(worker_jobs.noop.call()) for _ in range(50)]
    client.close()
    # Published, confirmed and recorded by the client: no relay runs (no scheduler).
    assert _entries_of_enqueues(system.database_url) == 0
    with DirectClient(client.settings) as reader:
        assert all(reader.wait(i, timeout=30) is None for i in ids)


def test_bad_requests_are_refused_with_the_apis_errors(client: DirectClient) -> None:
    with pytest.raises(JobValidationError, match="no_such_job"):
        client.enqueue(JobCall.named("tests.no_such_job"))
    with pytest.raises(JobValidationError, match="required"):
        client.enqueue(JobCall.named("tests.add", 1))
    with pytest.raises(JobValidationError) as bad_queue:
        client.enqueue(worker_jobs.add.call(1, 2), queue="Not A Queue")
    assert bad_queue.value.field == "queue"
    with pytest.raises(JobValidationError, match="nobody_knows"):
        client.enqueue(worker_jobs.add.call(1, 2), queue="nobody_knows")
    with pytest.raises(JobValidationError, match="retries"):
        client.enqueue(worker_jobs.add.call(1, 2), retries=1000)

    first = client.enqueue(worker_jobs.add.call(1, 2), idempotency_key="once")
    assert client.enqueue(worker_jobs.add.call(1, 2), idempotency_key="once") == first
    with pytest.raises(ConflictError):
        client.enqueue(worker_jobs.add.call(5, 5), idempotency_key="once")
    # Nothing refused was stored: only the idempotent job ran.
    assert client.wait(first, timeout=30) == 3


def test_delayed_jobs_are_promoted_by_the_scheduler(system: System, client: DirectClient) -> None:
    system.start("scheduler", "scheduler")
    job_id = client.schedule(worker_jobs.add.call(4, 4), delay=0.5)
    assert client.get(job_id)["state"] == "Scheduled"
    assert client.wait(job_id, timeout=60) == 8
    states = [h["state"] for h in client.get(job_id)["history"]]
    assert states == ["Scheduled", "Enqueued", "Processing", "Succeeded"]


def test_the_async_client_does_the_same_on_the_callers_loop(system: System) -> None:
    settings = Settings(
        database_url=system.database_url,
        amqp_url=system.amqp_url,
        broker_namespace=system.namespace,
    )

    async def scenario() -> None:
        async with AsyncDirectClient(settings) as client:
            job_id = await client.enqueue(worker_jobs.add.call(20, 1))
            ids = await client.enqueue_many([worker_jobs.add.call(i, 1) for i in range(5)])
            then = await client.continue_with(job_id, worker_jobs.add.call(0, 1))
            batch = await client.batch([worker_jobs.add.call(2, 2)])
            assert await client.wait(job_id, timeout=30) == 21
            assert [await client.wait(i, timeout=30) for i in ids] == [1, 2, 3, 4, 5]
            assert await client.wait(then, timeout=30) == 1
            assert await client.wait(batch["job_ids"][0], timeout=30) == 4
            assert (await client.get(job_id))["attempt"] == 1
            with pytest.raises(JobValidationError, match="no_such_job"):
                await client.enqueue(JobCall.named("tests.no_such_job"))

    asyncio.run(scenario())


def test_with_rabbitmq_away_jobs_wait_in_the_outbox(system: System) -> None:
    """Nothing is lost when the client cannot reach RabbitMQ: the jobs are committed with their
    outbox entries, which the relay publishes once it can (no relay runs here)."""
    away = Settings(
        database_url=system.database_url,
        amqp_url="amqp://guest:guest@127.0.0.1:1/",
        broker_namespace=system.namespace,
    )
    with DirectClient(away, connect_seconds=0.5) as client:
        ids = [client.enqueue(worker_jobs.add.call(i, i)) for i in range(3)]
        assert {client.get(i)["state"] for i in ids} == {"Enqueued"}
    assert _entries_of_enqueues(system.database_url) == 3
