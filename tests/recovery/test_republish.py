"""The reconciliation loop against a real RabbitMQ: an Enqueued job whose confirmed message was
deleted from its queue is published again, and nothing else is (a backlog, a young job, a
publication still in the outbox)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import sqlalchemy as sa
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import metrics, outbox, servers, store
from orchestrator.broker import Publisher, connect
from orchestrator.db import db_now
from orchestrator.outbox import OutboxSender
from orchestrator.store import jobs_table
from orchestrator.topology import Topology
from orchestrator_scheduler.reconcile import Republisher

AFTER = 300.0


@dataclass
class Rig:
    engine: AsyncEngine
    connection: AbstractRobustConnection
    topology: Topology
    sender: OutboxSender

    def republisher(self, *, batch: int = 500, after: float = AFTER) -> Republisher:
        return Republisher(
            self.engine,
            self.sender,
            self.topology,
            lambda: self.connection,
            republish_after=after,
            batch=batch,
        )

    @property
    def queue_name(self) -> str:
        return self.topology.work_queue("default").name

    async def enqueue(self, n: int, *, publish: bool = True) -> list[uuid.UUID]:
        """``n`` jobs committed in Enqueued; their messages published and confirmed."""
        new = [store.NewJob(name="x", queue="default", args=[], kwargs={}) for _ in range(n)]
        async with self.engine.begin() as conn:
            pending = await store.create_jobs(conn, new, await db_now(conn))
        if publish:
            assert self.sender.publisher is not None
            async with self.engine.begin() as conn:
                assert await outbox.publish_pending(conn, self.sender.publisher, pending) == n
        return [job.id for job in new]

    async def age(self, job_ids: list[uuid.UUID], by: timedelta) -> None:
        """Make the jobs look as if they entered Enqueued ``by`` ago."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(jobs_table)
                .where(jobs_table.c.id.in_(job_ids))
                .values(state_changed_at=await db_now(conn) - by)
            )

    async def purge(self) -> int:
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(self.queue_name, passive=True)
            return int((await queue.purge()).message_count)
        finally:
            await channel.close()

    async def queued_ids(self) -> list[uuid.UUID]:
        """The job ids of every ready message, left in the queue."""
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(self.queue_name, passive=True)
            found, held = [], []
            while (message := await queue.get(fail=False, no_ack=False)) is not None:
                found.append(uuid.UUID(json.loads(message.body)["job_id"]))
                held.append(message)
            for message in held:
                await message.nack(requeue=True)
            return found
        finally:
            await channel.close()


@pytest.fixture
async def rig(engine: AsyncEngine, amqp_url: str, namespace: str) -> AsyncIterator[Rig]:
    topology = Topology(namespace)
    connection = await connect(amqp_url, name="test-republish")
    sender = OutboxSender(engine, Publisher(connection, topology, 5.0))
    sender.start()
    # The loop looks at the queues workers consume.
    await servers.announce(engine, servers.ServerInfo(role="worker", queues=["default"]))
    try:
        yield Rig(engine, connection, topology, sender)
    finally:
        await sender.stop()
        await connection.close()


def _republished_total() -> float:
    return metrics.JOBS_REPUBLISHED.labels("default")._value.get()


async def test_a_purged_jobs_message_is_published_again_once(rig: Rig) -> None:
    jobs = await rig.enqueue(5)
    await rig.age(jobs, timedelta(hours=1))
    republisher = rig.republisher()
    # Old, unclaimed, but each has its message: a backlog is left alone.
    await republisher.tick()
    assert republisher.republished == 0
    assert sorted(await rig.queued_ids()) == sorted(jobs)

    assert await rig.purge() == 5
    before = _republished_total()
    await republisher.tick()
    assert republisher.republished == 5
    assert _republished_total() - before == 5
    assert sorted(await rig.queued_ids()) == sorted(jobs)
    async with rig.engine.connect() as conn:
        assert await outbox.backlog(conn) == 0  # confirmed, through the outbox
    # The copies are counted at the next pass: nothing more is sent.
    await republisher.tick()
    assert republisher.republished == 5


async def test_jobs_younger_than_the_threshold_are_not_republished(rig: Rig) -> None:
    old = await rig.enqueue(3)
    await rig.age(old, timedelta(seconds=AFTER + 5))
    young = await rig.enqueue(4)
    await rig.age(young, timedelta(seconds=AFTER - 30))
    assert await rig.purge() == 7
    republisher = rig.republisher()
    await republisher.tick()
    assert sorted(await rig.queued_ids()) == sorted(old)
    await republisher.tick()
    assert republisher.republished == 3
    assert sorted(await rig.queued_ids()) == sorted(old)


async def test_a_pass_is_bounded_and_walks_on_through_older_losses(rig: Rig) -> None:
    jobs = await rig.enqueue(7)
    await rig.age(jobs, timedelta(hours=1))
    assert await rig.purge() == 7
    republisher = rig.republisher(batch=3)
    sent: list[int] = []
    while True:
        before = republisher.republished
        await republisher.tick()
        if republisher.republished == before:
            break
        sent.append(republisher.republished - before)
    # No consumer takes the copies, so each pass must reach jobs the last one did not.
    assert sent == [3, 3, 1]
    assert sorted(await rig.queued_ids()) == sorted(jobs)


async def test_a_publication_still_in_the_outbox_is_not_doubled(rig: Rig) -> None:
    waiting = await rig.enqueue(2, publish=False)
    await rig.age(waiting, timedelta(hours=1))
    republisher = rig.republisher()
    await republisher.tick()
    assert republisher.republished == 0
    async with rig.engine.connect() as conn:
        assert await outbox.backlog(conn) == 2  # the relay's, once the broker takes it


async def test_nothing_is_republished_without_a_broker_connection(rig: Rig) -> None:
    jobs = await rig.enqueue(2)
    await rig.age(jobs, timedelta(hours=1))
    await rig.purge()
    await rig.connection.close()
    republisher = rig.republisher()
    await republisher.tick()
    assert republisher.republished == 0


