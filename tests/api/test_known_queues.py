"""Issue 11, "What was seen" 10: a request cannot invent queues.

The accepted queues are the catalog's jobs' queues plus ``ORCHESTRATOR_QUEUES`` (the tests'
settings list ``low`` and ``other``); any other queue is refused with 422 naming it and the known
ones, before anything is stored or declared in RabbitMQ, so no metric series appears for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest
from aiormq.exceptions import ChannelNotFoundEntity
from prometheus_client import REGISTRY

from tests.api.conftest import ADD, BOUNDS_JOBS, TEST_JOBS, Api, ApiFactory

KNOWN = ("critical", "default", "low", "mail", "other")


def _assert_refused(response: Any, queue: str) -> None:
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert f"unknown queue {queue!r}" in message
    for known in KNOWN:
        assert known in message


async def test_an_unknown_queue_is_refused_everywhere_a_job_is_created(bounded_api: Api) -> None:
    api = bounded_api
    single = await api.http.post("/api/v1/jobs", json={"job": ADD, "args": [1, 2], "queue": "q0"})
    _assert_refused(single, "q0")
    bulk = [{"job": ADD, "args": [1, 2], "queue": f"q{i}"} for i in range(20)]
    refused = await api.http.post("/api/v1/jobs/bulk", json={"jobs": bulk})
    _assert_refused(refused, "q0")
    assert "jobs[0]" in refused.json()["error"]["message"]
    batch = await api.http.post(
        "/api/v1/batches",
        json={"jobs": [{"job": ADD, "args": [1, 2]}], "on_complete": bulk[3]},
    )
    _assert_refused(batch, "q3")
    recurring = await api.http.put(
        "/api/v1/recurring/r", json={"job": ADD, "args": [1, 2], "cron": "@daily", "queue": "q4"}
    )
    _assert_refused(recurring, "q4")
    assert await api.count() == 0
    assert await api.count("recurring_jobs") == 0
    assert await api.count("outbox") == 0


async def test_a_queue_of_any_catalog_job_or_of_the_operator_is_accepted(bounded_api: Api) -> None:
    # "mail" is another job's queue, "other" is in ORCHESTRATOR_QUEUES, "critical" is urgent's.
    for queue in ("mail", "other", "critical", None):
        body: dict[str, Any] = {"job": ADD, "args": [1, 2]}
        if queue is not None:
            body["queue"] = queue
        response = await bounded_api.http.post("/api/v1/jobs", json=body)
        assert response.status_code == 201, response.text


async def test_operator_queues_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, start_api: ApiFactory, sqlite_url: str
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_QUEUES", "reports, bulk-mail")
    from orchestrator.settings import load_settings

    assert load_settings().queues == ["reports", "bulk-mail"]
    async with start_api(sqlite_url, jobs=[TEST_JOBS], queues=["reports"]) as api:
        for queue, status in (("reports", 201), ("low", 422)):
            body = {"job": ADD, "args": [1, 2], "queue": queue}
            response = await api.http.post("/api/v1/jobs", json=body)
            assert response.status_code == status, response.text


async def _queue_exists(amqp_url: str, name: str) -> bool:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            return False
        return True
    finally:
        await connection.close()


async def test_a_refused_queue_is_never_declared_nor_counted(
    start_api: ApiFactory, sqlite_url: str, amqp_url: str, namespace: str
) -> None:
    """With RabbitMQ up: 20 invented queues in one bulk request make no queue and no metric
    series; an accepted job's queue is declared by the publish (the check can see one)."""
    async with start_api(sqlite_url, jobs=[TEST_JOBS, BOUNDS_JOBS]) as api:
        names = [f"invented-{i}" for i in range(20)]
        bulk = [{"job": ADD, "args": [1, 2], "queue": name} for name in names]
        refused = await api.http.post("/api/v1/jobs/bulk", json={"jobs": bulk})
        assert refused.status_code == 422
        job_id = await api.enqueue(ADD, args=[1, 2], queue="mail")
        while await api.outbox_for(job_id):  # published (and its queue declared) by the fast path
            await asyncio.sleep(0.05)
        assert await _queue_exists(amqp_url, f"{namespace}.q.mail")
        for name in names:
            assert not await _queue_exists(amqp_url, f"{namespace}.q.{name}")
            labels = {"queue": name, "job_name": ADD, "state": "Enqueued"}
            assert REGISTRY.get_sample_value("orchestrator_jobs_enqueued_total", labels) is None
