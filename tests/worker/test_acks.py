"""Acks of one channel go out together, and never settle a delivery another path still holds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika

from orchestrator.broker import JobMessage, Publisher, connect
from orchestrator.settings import Settings
from orchestrator.topology import Topology
from orchestrator_worker.acks import SettledTags
from orchestrator_worker.intake import Delivery, Intake

#: Only to end a failing test: how long published messages may take to reach the intake.
TAKEN_WITHIN_SECONDS = 30.0


def test_a_multiple_ack_reaches_only_over_settled_or_wanted_tags() -> None:
    tags = SettledTags()
    assert tags.reach([1, 2, 3]) == 3
    assert tags.reach([1, 2, 4, 5]) == 2  # 3 is held elsewhere (or not seen yet)
    assert tags.reach([2, 3]) is None  # 1 is not settled
    tags.mark([1, 2, 4])
    assert (tags.through, tags.above) == (2, {4})
    assert tags.reach([3, 5]) == 5  # over 4, settled already
    assert tags.reach([5]) is None
    tags.mark([3])
    assert (tags.through, tags.above) == (4, set())
    assert tags.settled(4) and not tags.settled(5)


async def _queue_depth(amqp_url: str, name: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(name, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def test_acks_go_out_together_and_skip_a_delivery_held_elsewhere(
    make_settings: Callable[..., Settings], sqlite_url: str, amqp_url: str
) -> None:
    settings = make_settings(sqlite_url)
    topology = Topology.of(settings)
    connection = await connect(settings.amqp_url, name="acks")
    taken: asyncio.Queue[Delivery] = asyncio.Queue()
    intake = Intake(connection, topology, ["default"], 16, taken.put_nowait, taken.put_nowait)
    frames: list[tuple[int, bool]] = []
    try:
        await intake.start()
        ids = [uuid.uuid4() for _ in range(8)]
        publisher = Publisher(connection, topology, 5)
        assert all(await publisher.publish([JobMessage(job_id, "default") for job_id in ids]))
        got = [await asyncio.wait_for(taken.get(), TAKEN_WITHIN_SECONDS) for _ in range(len(ids))]
        got.sort(key=lambda d: d.message.delivery_tag or 0)
        channel: Any = got[0].message.channel
        real_ack = channel.basic_ack

        async def counted(delivery_tag: int, multiple: bool = False, **kw: Any) -> None:
            frames.append((delivery_tag, multiple))
            await real_ack(delivery_tag=delivery_tag, multiple=multiple, **kw)

        channel.basic_ack = counted
        first = got[0].message.delivery_tag or 0
        # The third is held by another path (a round held while the store is away, say).
        await intake.settle([got[0], got[1], got[3], got[4]])
        assert frames == [(first + 1, True), (first + 3, False), (first + 4, False)]
        assert intake.unsettled == 4
        frames.clear()
        # Settled again by mistake: skipped, not acked twice (that would close the channel).
        await intake.settle([got[0]])
        assert frames == []
        # Now the rest: one frame, over the ones acked already.
        await intake.settle([got[2], *got[5:7]])
        assert frames == [(first + 6, True)]
        assert intake.unsettled == 1
    finally:
        await intake.stop()
        await connection.close()
    # Only the last delivery was never settled: RabbitMQ requeued it when the connection
    # closed, and nothing else.
    assert await _queue_depth(amqp_url, topology.work_queue("default").name) == 1
