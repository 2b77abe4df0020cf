"""The outbox's fast path sends a round's messages while earlier rounds still wait for their
confirms: an entry committed just now does not wait a whole confirm round trip to be sent."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aio_pika
import sqlalchemy as sa
from aio_pika.abc import AbstractRobustConnection

from orchestrator import outbox, store
from orchestrator.broker import JobMessage, Publisher, connect
from orchestrator.db import create_engine, db_now
from orchestrator.topology import Topology

#: Only to end a failing test: the second round never starts without pipelining.
STARTED_WITHIN_SECONDS = 30.0


class FirstRoundHeld(Publisher):
    """The real publisher, whose first round waits (as for slow confirms) until released."""

    def __init__(self, connection: AbstractRobustConnection, topology: Topology) -> None:
        super().__init__(connection, topology, 5)
        self.rounds: list[list[JobMessage]] = []
        self.release = asyncio.Event()
        self.second_started = asyncio.Event()

    async def publish(self, messages: Sequence[JobMessage]) -> list[bool]:
        self.rounds.append(list(messages))
        if len(self.rounds) == 1:
            await self.release.wait()
        else:
            self.second_started.set()
        return await super().publish(messages)


async def _ready(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def test_a_round_is_sent_while_the_one_before_waits_for_confirms(
    sqlite_url: str, amqp_url: str, namespace: str
) -> None:
    engine = create_engine(sqlite_url)
    connection = await connect(amqp_url, name="publish-rounds")
    publisher = FirstRoundHeld(connection, Topology(namespace))
    sender = outbox.OutboxSender(engine, publisher)
    sender.start()
    try:
        new = [store.NewJob(name="x", queue="default", args=[i], kwargs={}) for i in range(2)]
        async with engine.begin() as conn:
            first, second = await store.create_jobs(conn, new, await db_now(conn))
        sender.submit([first])
        while not publisher.rounds:
            await asyncio.sleep(0.01)
        sender.submit([second])
        await asyncio.wait_for(publisher.second_started.wait(), STARTED_WITHIN_SECONDS)
        assert publisher.rounds == [[first.message], [second.message]]
        publisher.release.set()
        await sender.flush()
        async with engine.connect() as conn:
            left = await conn.execute(sa.text("SELECT count(*) FROM outbox"))
            assert left.scalar_one() == 0
        assert await _ready(amqp_url, f"{namespace}.q.default") == 2
    finally:
        publisher.release.set()
        await sender.stop()
        await connection.close()
        await engine.dispose()
