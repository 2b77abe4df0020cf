"""A worker rejects what cannot be a job of ours into ``<ns>.dead``, and still runs real jobs."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika

from orchestrator.settings import Settings
from orchestrator.topology import Topology, declare_base
from orchestrator_worker.worker import Worker
from tests.worker.test_worker import enqueue, running_worker, wait_for_states

__all__ = ["running_worker"]


async def test_garbage_and_unknown_jobs_are_dead_lettered(
    running_worker: tuple[Settings, Worker],
) -> None:
    settings, _ = running_worker
    topology = Topology(settings.broker_namespace, settings.delivery_limit)
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await declare_base(channel, topology)
        for body in (b"not json", f'{{"job_id": "{uuid.uuid4()}"}}'.encode()):
            await exchange.publish(aio_pika.Message(body), routing_key="default")
        (real,) = await enqueue(settings, [("tests.add", [2, 3], "default")])
        await wait_for_states(settings, [real], lambda s: s == "Succeeded")
        for _ in range(200):
            dead = await channel.declare_queue(topology.dead_letter_queue.name, passive=True)
            if dead.declaration_result.message_count == 2:
                break
            await asyncio.sleep(0.05)
        assert dead.declaration_result.message_count == 2
        reasons = []
        for _ in range(2):
            message = await dead.get(no_ack=True)
            reasons.append(message.headers["x-death"][0]["reason"])
        assert reasons == ["rejected", "rejected"]
    finally:
        await connection.close()
