"""The broker's delay levels: which levels a delay takes (data), and real delays through them."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import pytest

from orchestrator.broker import JobMessage, Publisher, connect, decode_job_id
from orchestrator.topology import (
    MAX_DELAY_PASS,
    Topology,
    declare_base,
    declare_work_queue,
    delay_levels,
    delay_routing_key,
)


@pytest.mark.parametrize(
    ("seconds", "levels"),
    [
        (1, [0]),
        (2, [1]),
        (3, [1, 0]),
        (37, [5, 2, 0]),  # 32 + 4 + 1
        (100_000, [16, 15, 10, 9, 7, 5]),  # 65536 + 32768 + 1024 + 512 + 128 + 32
        (0.2, [0]),  # rounds up to whole seconds
        (2.5, [1, 0]),
        (0, []),
        (10**9, list(reversed(range(18)))),  # capped at one pass; the worker sends it round again
    ],
)
def test_levels_a_delay_takes(seconds: float, levels: list[int]) -> None:
    assert delay_levels(seconds) == levels
    assert sum(2**k for k in levels) == min(MAX_DELAY_PASS, -(-seconds // 1))


def test_routing_key_spells_the_delay_in_binary_then_the_queue() -> None:
    assert delay_routing_key(37, "default") == "0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.1.0.1.default"
    assert MAX_DELAY_PASS == 2**18 - 1


def test_levels_are_fixed_ttl_quorum_queues_dead_lettering_at_least_once() -> None:
    topology = Topology("x")
    for level in (0, 5, 17):
        args = dict(topology.delay_queue(level).arguments)
        assert args["x-message-ttl"] == 2**level * 1000
        assert args["x-queue-type"] == "quorum"
        assert args["x-dead-letter-strategy"] == "at-least-once"
        assert args["x-overflow"] == "reject-publish"
        below = "x.delay.out" if level == 0 else f"x.delay.{level - 1}"
        assert args["x-dead-letter-exchange"] == below
    assert ("x.delay.out", "#.default") in topology.work_queue("default").bindings


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
