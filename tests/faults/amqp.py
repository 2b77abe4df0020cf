"""Talking to a test broker directly: raw publishes, queue depths, reading a queue."""

from __future__ import annotations

import asyncio
import contextlib

import aio_pika


def publish_raw(url: str, exchange: str, routing_key: str, bodies: list[bytes]) -> None:
    """Publish ``bodies`` as persistent messages (confirmed), bypassing the outbox."""

    async def run() -> None:
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            target = await channel.get_exchange(exchange, ensure=True)
            for body in bodies:
                await target.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=routing_key,
                )
        finally:
            await connection.close()

    asyncio.run(run())


def queue_depth(url: str, queue: str) -> int:
    """Ready messages in ``queue`` (-1 when it does not exist)."""

    async def run() -> int:
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(queue, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return -1
            return int(declared.declaration_result.message_count or 0)
        finally:
            await connection.close()

    return asyncio.run(run())


def read_queue(url: str, queue: str) -> list[bytes]:
    """Bodies of every ready message in ``queue``, left in place (rejected back, not acked)."""

    async def run() -> list[bytes]:
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            target = await channel.declare_queue(queue, passive=True)
            bodies: list[bytes] = []
            messages = []
            while True:
                message = await target.get(fail=False, no_ack=False)
                if message is None:
                    break
                bodies.append(message.body)
                messages.append(message)
            for message in messages:
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
            return bodies
        finally:
            await connection.close()

    return asyncio.run(run())
