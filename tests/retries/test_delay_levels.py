"""Real delays through the broker's delay levels (which levels a delay takes, as data, is
tests/unit/test_topology.py)."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika

from orchestrator.broker import JobMessage, Publisher, connect, decode_job_id
from orchestrator.topology import Topology, declare_base, declare_work_queue


async def _receive(amqp_url: str, namespace: str, count: int, timeout: float) -> list[tuple]:
    """Consume ``count`` messages from the default work queue: (job id, arrival time)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        topology = Topology(namespace)
        await declare_base(channel, topology)
        queue = await declare_work_queue(channel, topology, "default")
        arrivals: list[tuple] = []
        async with queue.iterator() as messages:
            async with asyncio.timeout(timeout):
                async for message in messages:
                    await message.ack()
                    arrivals.append((decode_job_id(message.body), time.monotonic()))
                    if len(arrivals) == count:
                        break
        return arrivals
    finally:
        await connection.close()


async def test_delays_arrive_after_their_time_shorter_not_stuck_behind_longer(
    amqp_url: str, namespace: str
) -> None:
    connection = await connect(amqp_url, name="delay-test")
    publisher = Publisher(connection, Topology(namespace), 5)
    long_id, short_id, none_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        receiving = asyncio.create_task(_receive(amqp_url, namespace, 3, 20))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        # 3 s waits in levels 1 and 0; 1 s only in level 0, so it overtakes the 3 s message.
        sent = await publisher.publish(
            [
                JobMessage(long_id, "default", delay_seconds=3),
                JobMessage(short_id, "default", delay_seconds=1),
                JobMessage(none_id, "default"),
            ]
        )
        assert sent == [True, True, True]
        arrivals = {job_id: at - started for job_id, at in await receiving}
    finally:
        await connection.close()
    # Never early; and the 1 s message overtakes the 3 s one published before it (not stuck
    # behind it). Order, not speed: a loaded CI machine may deliver any of them a bit late.
    assert arrivals[none_id] < arrivals[short_id] < arrivals[long_id]
    assert arrivals[short_id] >= 1.0
    assert arrivals[long_id] >= 3.0
