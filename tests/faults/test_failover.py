"""``orchestrator.broker.connect()`` over several broker addresses: it connects to one that is
up, and when that node goes its robust connection moves to another, with its queue declarations
and consumers restored there. The two brokers here are a private node and the shared one (not a
cluster: the queue is declared anew on the second); tests/faults/test_cluster.py runs the roles
on a real three-node cluster."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from orchestrator.broker import FailoverConnection, connect
from tests.faults.harness import RabbitNode, free_port


def _port(connection: FailoverConnection) -> int | None:
    return connection.current.port


async def test_a_lost_node_moves_the_connection_to_the_next_one(
    broker: RabbitNode, amqp_url: str
) -> None:
    connection = FailoverConnection([broker.url, amqp_url], client_properties={})
    await connection.connect(timeout=10)
    name = f"failover-{uuid.uuid4().hex[:8]}"
    try:
        assert _port(connection) == broker.port
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def consume(message: AbstractIncomingMessage) -> None:
            await received.put(message.body)
            await message.ack()

        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=True)
        await queue.consume(consume)
        reconnected = asyncio.Event()
        connection.reconnect_callbacks.add(lambda *_: reconnected.set())

        await asyncio.to_thread(broker.stop)
        await asyncio.wait_for(reconnected.wait(), 60)
        assert _port(connection) != broker.port  # on the shared broker now

        # The queue was declared again and the consumer restored on the other broker.
        other = await aio_pika.connect(amqp_url)
        try:
            publishing = await other.channel(publisher_confirms=True)
            await publishing.default_exchange.publish(aio_pika.Message(b"after"), name)
        finally:
            await other.close()
        assert await asyncio.wait_for(received.get(), 30) == b"after"
    finally:
        with_shared = await aio_pika.connect(amqp_url)
        channel = await with_shared.channel()
        await channel.queue_delete(name)
        await with_shared.close()
        await connection.close()
        await asyncio.to_thread(broker.start)


async def test_connect_skips_an_address_that_is_down(amqp_url: str) -> None:
    down = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    # connect() starts at a random address; every start must end up connected.
    for _ in range(6):
        connection = await connect([down, amqp_url], name="test-failover", timeout=5)
        assert isinstance(connection, FailoverConnection)
        assert str(connection.current) == amqp_url
        await connection.close()
