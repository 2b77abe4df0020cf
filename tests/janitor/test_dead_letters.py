"""Dead letters, end to end on the real broker: a rejected message, garbage, a message naming no
job and one over the delivery limit land in ``<ns>.dead``; the janitor records them (once), fails
the Enqueued job named; the API lists, replays and discards them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractQueue
from fastapi import FastAPI

from orchestrator import composition, dead_letters, store
from orchestrator.db import create_engine
from orchestrator.settings import Settings
from orchestrator.topology import Topology, declare_base, declare_work_queue
from orchestrator_api.app import create_app
from orchestrator_janitor.janitor import Janitor


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(database_url, jobs=["tests.jobs_for_tests"], delivery_limit=1)


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield app, client


async def _get(queue: AbstractQueue) -> aio_pika.abc.AbstractIncomingMessage:
    for _ in range(100):
        message = await queue.get(no_ack=False, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError("no message arrived")


async def _dead_count(channel: aio_pika.abc.AbstractChannel, topology: Topology) -> int:
    dead = await channel.declare_queue(topology.dead_letter_queue.name, passive=True)
    return dead.declaration_result.message_count or 0


async def test_dead_letters_are_recorded_listed_replayed_and_discarded(
    settings: Settings, http: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    app, client = http
    for _ in range(200):  # the API connects to RabbitMQ in the background
        if app.state.runtime.broker.connected and app.state.runtime.sender.publisher:
            break
        await asyncio.sleep(0.05)
    topology = Topology(settings.broker_namespace, settings.delivery_limit)
    made = await client.post(
        "/api/v1/jobs", json={"job": "tests.jobs_for_tests.add", "args": [1, 2]}
    )
    assert made.status_code == 201, made.text
    job_id = made.json()["id"]
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await declare_base(channel, topology)
        queue = await declare_work_queue(channel, topology, "default")
        # 1. the job's own message, rejected by a worker
        await (await _get(queue)).reject(requeue=False)
        # 2. garbage, 3. a message naming no job
        for body in (b"\xff not json", f'{{"job_id": "{uuid.uuid4()}"}}'.encode()):
            await exchange.publish(aio_pika.Message(body, message_id="m"), routing_key="default")
            await (await _get(queue)).reject(requeue=False)
        # 4. a message returned by crashing workers until the delivery limit (1) is passed
        stuck = f'{{"job_id": "{uuid.uuid4()}"}}'.encode()
        await exchange.publish(aio_pika.Message(stuck), routing_key="default")
        for _ in range(2):
            await (await _get(queue)).nack(requeue=True)
        for _ in range(100):
            if await _dead_count(channel, topology) == 4:
                break
            await asyncio.sleep(0.05)
        assert await _dead_count(channel, topology) == 4

        engine = create_engine(settings.database_url)
        drain = Janitor(settings).drain(engine)
        try:
            assert await drain.tick() is False
            assert await _dead_count(channel, topology) == 0  # acked after commit
        finally:
            await drain.close()
            await engine.dispose()

        listed = (await client.get("/api/v1/dead-letters", params={"limit": 3})).json()
        second = await client.get(
            "/api/v1/dead-letters", params={"limit": 3, "cursor": listed["next_cursor"]}
        )
        items = listed["items"] + second.json()["items"]
        assert second.json()["next_cursor"] is None
        assert len(items) == 4 and [i["id"] for i in items] == sorted(
            (i["id"] for i in items), reverse=True
        )
        by_reason = {(i["reason"], i["job_id"] == job_id): i for i in items}
        own = by_reason[("rejected", True)]
        assert (
            own["queue"] == "default" and own["source_queue"] == topology.work_queue("default").name
        )
        assert own["headers"]["x-death"][0]["reason"] == "rejected"
        assert ("delivery_limit", False) in by_reason
        assert "delivery limit" in by_reason[("delivery_limit", False)]["why"]
        garbage = next(i for i in items if i["job_id"] is None)
        assert garbage["body_encoding"] == "base64" and "not a job message" in garbage["why"]

        job = (await client.get(f"/api/v1/jobs/{job_id}")).json()
        assert job["state"] == "Failed"
        assert job["history"][-1]["reason"].startswith("Dead-lettered: rejected by a worker")

        # Replay: the job failed by its dead letter is requeued and its message sent again.
        replayed = await client.post(f"/api/v1/dead-letters/{own['id']}/replay")
        assert replayed.json() == {
            "id": own["id"],
            "job_id": job_id,
            "action": "requeued",
            "state": "Enqueued",
        }
        assert (await client.get(f"/api/v1/jobs/{job_id}")).json()["state"] == "Enqueued"
        again = await _get(queue)
        assert job_id in again.body.decode()
        await again.ack()
        assert (await client.get(f"/api/v1/dead-letters/{own['id']}")).status_code == 404

        # Garbage cannot be replayed, only discarded.
        refused = await client.post(f"/api/v1/dead-letters/{garbage['id']}/replay")
        assert refused.status_code == 409 and "discard" in refused.json()["error"]["message"]
        assert (await client.delete(f"/api/v1/dead-letters/{garbage['id']}")).status_code == 200
        assert (await client.delete(f"/api/v1/dead-letters/{garbage['id']}")).status_code == 404
    finally:
        await connection.close()


async def test_the_same_dead_letter_is_recorded_once(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    job = store.NewJob(name="tests.add", queue="default", args=[1, 2], kwargs={})
    now = datetime.now(UTC)
    death = {
        "x-death": [{"reason": "delivery_limit", "queue": "ns.q.default", "count": 1, "time": now}]
    }
    letter = dead_letters.Letter(
        f'{{"job_id": "{job.id}"}}'.encode() + b" " * 100, death, str(job.id), "default"
    )
    try:
        async with engine.begin() as conn:
            await store.create_jobs(conn, [job], now)
        for expected in ((1, 1), (0, 0)):  # a redelivered copy: recorded before
            async with engine.begin() as conn:
                assert (
                    await dead_letters.record(
                        conn,
                        [letter],
                        now,
                        body_limit=20,
                        transitions=composition.transitions(timedelta(hours=1)),
                    )
                    == expected
                )
        async with engine.connect() as conn:
            rows, _ = await dead_letters.list_page(conn, limit=10, cursor=None)
            failed = await store.get_job(conn, job.id)
        view: dict[str, Any] = dead_letters.public(rows[0])
        assert (view["body_size"], view["body_truncated"], len(view["body"])) == (150, True, 20)
        assert failed.state == "Failed" and failed.error_type == "DeadLettered"
    finally:
        await engine.dispose()
