"""Issue 14, point 12: a job enqueued to a known queue that no worker consumes is answered with a
``Warning`` header naming the queue, and the API logs a line (once a minute per queue). The API
reads the consumers of the known queues from RabbitMQ in the background (consumer_watch); these
tests use the real broker, with a consumer of their own standing in for a worker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from orchestrator.settings import Settings
from orchestrator.topology import Topology, declare_base, declare_work_queue
from orchestrator_api.consumer_watch import warning_value
from tests.api.conftest import ADD, Api, ApiFactory

WATCH_LOG = "orchestrator_api.consumer_watch"


async def _consumer(amqp_url: str, namespace: str, queue: str) -> AbstractRobustConnection:
    """A consumer on the work queue ``queue``, as a worker serving it has (it takes nothing)."""
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    topology = Topology(namespace, Settings().delivery_limit)
    await declare_base(channel, topology)
    work = await declare_work_queue(channel, topology, queue)
    await work.consume(_take_nothing)

    return connection


async def _take_nothing(message: AbstractIncomingMessage) -> None:
    """Never acks: the broker gives the message back when the consumer's connection closes."""


async def _until_seen(api: Api, expected: dict[str, int], timeout: float = 60) -> None:
    """Wait until the API's background reads report ``expected`` consumers per queue."""
    deadline = time.monotonic() + timeout
    while {q: api.runtime.consumers.consumers(q) for q in expected} != expected:
        assert time.monotonic() < deadline, "the API never read the queues' consumers"
        await asyncio.sleep(0.05)


@pytest.fixture
async def served_default(amqp_url: str, namespace: str) -> AsyncIterator[AbstractRobustConnection]:
    connection = await _consumer(amqp_url, namespace, "default")
    try:
        yield connection
    finally:
        await connection.close()


async def test_a_queue_no_worker_consumes_is_named_in_a_warning(
    start_api: ApiFactory,
    sqlite_url: str,
    served_default: AbstractRobustConnection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=WATCH_LOG)
    async with start_api(sqlite_url) as api:
        await _until_seen(api, {"default": 1, "other": 0, "low": 0})

        served = await api.http.post("/api/v1/jobs", json={"job": ADD, "args": [1, 2]})
        assert served.status_code == 201 and "warning" not in served.headers
        for _ in range(3):
            idle = await api.http.post(
                "/api/v1/jobs", json={"job": ADD, "args": [1, 2], "queue": "other"}
            )
            assert idle.status_code == 201, idle.text
            assert idle.headers["warning"] == warning_value(["other"])
        assert "queue 'other'" in idle.headers["warning"]

        jobs = [{"job": ADD, "args": [1, 2], "queue": q} for q in ("default", "low", "other")]
        bulk = await api.http.post("/api/v1/jobs/bulk", json={"jobs": jobs})
        assert bulk.status_code == 201
        assert bulk.headers["warning"] == warning_value(["low", "other"])
        batch = await api.http.post("/api/v1/batches", json={"jobs": jobs[1:2]})
        assert batch.status_code == 201
        assert batch.headers["warning"] == warning_value(["low"])
        served_bulk = await api.http.post("/api/v1/jobs/bulk", json={"jobs": jobs[:1]})
        assert "warning" not in served_bulk.headers

        lines = [r.getMessage() for r in caplog.records if r.name == WATCH_LOG]
        assert len(lines) == 2, lines  # one per queue, however many enqueues
        assert "queue 'other', which no worker consumes" in lines[0]
        assert "queue 'low'" in lines[1]

        await served_default.close()  # the last worker of "default" goes away
        await _until_seen(api, {"default": 0})
        gone = await api.http.post("/api/v1/jobs", json={"job": ADD, "args": [1, 2]})
        assert gone.headers["warning"] == warning_value(["default"])


async def test_without_rabbitmq_there_is_no_warning(api: Api) -> None:
    """Unreachable RabbitMQ: the API cannot know, so it does not warn (the outbox waits)."""
    response = await api.http.post(
        "/api/v1/jobs", json={"job": ADD, "args": [1, 2], "queue": "other"}
    )
    assert response.status_code == 201
    assert "warning" not in response.headers
    assert api.runtime.consumers.consumers("other") is None
