"""An ack whose channel is gone (a reconnect happened) does not crash the worker."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from orchestrator import metrics
from orchestrator.broker import JobMessage, Publisher, connect
from orchestrator.settings import Settings
from orchestrator.topology import Topology, declare_base, declare_work_queue
from orchestrator_worker.intake import Delivery, Intake, settle


async def _one_delivery(
    settings: Settings, name: str
) -> tuple[AbstractRobustConnection, Topology, AbstractChannel, AbstractIncomingMessage]:
    """A job message published and taken (unacked) from the work queue on a channel of its own."""
    topology = Topology(settings.broker_namespace)
    connection = await connect(settings.amqp_url, name=name)
    channel = await connection.channel()
    await declare_base(channel, topology)
    queue = await declare_work_queue(channel, topology, "default")
    assert await Publisher(connection, topology, 5).publish([JobMessage(uuid.uuid4(), "default")])
    message = await queue.get(timeout=5)
    assert isinstance(message, AbstractIncomingMessage)
    return connection, topology, channel, message


async def test_stale_ack_is_logged_and_the_delivery_comes_back(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    connection, topology, channel, message = await _one_delivery(
        make_settings(sqlite_url), "stale-ack"
    )
    await channel.close()  # what a dropped connection does to every unacked delivery

    await settle([Delivery("default", message)])  # must not raise

    check = await connection.channel()
    declared = await check.declare_queue(topology.work_queue("default").name, passive=True)
    assert declared.declaration_result.message_count == 1  # requeued, to lose its claim later
    await connection.close()


def _returned(reason: str) -> float:
    return sum(
        sample.value
        for family in metrics.DELIVERIES_RETURNED.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["reason"] == reason
    )


async def test_the_intake_settles_a_delivery_whose_channel_closed_without_raising(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    """aio-pika raises on reading a closed channel's message's channel: the intake's settle
    (which groups acks by channel) counts such a delivery as a lost channel instead of failing
    its caller (the hand-back round stopped there, uncounted, in CI)."""
    connection, topology, channel, message = await _one_delivery(
        make_settings(sqlite_url), "stale-intake"
    )
    intake = Intake(connection, topology, ["default"], 1, lambda _: None, lambda _: None)
    delivery = intake._own(Delivery("default", message))  # as taken by its pull loop
    await channel.close()
    lost = _returned("channel_lost")

    await intake.settle([delivery])  # must not raise

    assert _returned("channel_lost") == lost + 1
    assert intake.close_unsettled() == 0  # not counted twice when the worker closes
    await connection.close()
