"""With RabbitMQ up, the API publishes right after commit (the fast path) and the entry is gone."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika

from orchestrator.lifecycle import State
from tests.api.conftest import ADD, URGENT, Api


async def _wait_connected(api: Api) -> None:
    for _ in range(100):
        if api.runtime.broker.connected and api.runtime.sender.publisher is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the API did not connect to RabbitMQ")


async def _ready_messages(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def test_enqueue_publishes_after_commit(
    start_api: Any, database_url: str, amqp_url: str, namespace: str
) -> None:
    async with start_api(database_url) as api:
        await _wait_connected(api)
        job_id = await api.enqueue()
        await api.runtime.sender.flush()
        assert await api.outbox_for(job_id) == []
        assert await _ready_messages(amqp_url, f"{namespace}.q.default") == 1
        ids = (
            await api.http.post(
                "/api/v1/jobs/bulk",
                json={"jobs": [{"job": URGENT, "args": [i]} for i in range(20)]},
            )
        ).json()["ids"]
        await api.runtime.sender.flush()
        assert len(ids) == 20
        assert await api.count("outbox") == 0
        assert await _ready_messages(amqp_url, f"{namespace}.q.critical") == 20
        stats = (await api.http.get("/api/v1/stats")).json()
        queues = {q["name"]: q for q in stats["queues"]}
        assert queues["critical"]["ready"] == 20
        assert queues["critical"]["consumers"] == 0
        assert queues["default"]["ready"] == 1


async def test_requeue_publishes_after_commit(
    start_api: Any, sqlite_url: str, amqp_url: str, namespace: str
) -> None:
    async with start_api(sqlite_url) as api:
        await _wait_connected(api)
        job_id = await api.enqueue(ADD, args=[1, 1])
        await api.move(job_id, State.FAILED)
        response = await api.http.post(f"/api/v1/jobs/{job_id}/requeue")
        assert response.status_code == 200
        await api.runtime.sender.flush()
        assert await api.outbox_for(job_id) == []
        assert await _ready_messages(amqp_url, f"{namespace}.q.default") == 2


async def test_stats_for_a_queue_rabbitmq_never_saw(
    start_api: Any, sqlite_url: str, namespace: str
) -> None:
    async with start_api(sqlite_url) as api:
        await _wait_connected(api)
        await api.enqueue(ADD, args=[1, 1], delay_seconds=600, queue="low")
        stats = (await api.http.get("/api/v1/stats")).json()
        assert stats["queues"] == [{"name": "low", "ready": 0, "consumers": 0, "processing": 0}]
        readyz = (await api.http.get("/readyz")).json()
        assert readyz["checks"] == {"store": True, "broker": True}
