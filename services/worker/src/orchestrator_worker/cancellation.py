"""Signals that stop a running job: the API deletes it, the worker hears about it at once."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from orchestrator.topology import Topology, declare_control_queue

log = logging.getLogger(__name__)


def cancelled_job(body: bytes) -> uuid.UUID | None:
    """The job id in a cancel signal, or None for anything else."""
    try:
        return uuid.UUID(json.loads(body)["cancel"])
    except (ValueError, KeyError, TypeError):
        return None


async def listen(
    connection: AbstractRobustConnection,
    topology: Topology,
    on_cancel: Callable[[uuid.UUID], None],
) -> AbstractChannel:
    """Consume this worker's signal queue; returns the channel so the caller can close it."""
    channel = await connection.channel()
    queue = await declare_control_queue(channel, topology)

    async def on_message(message: AbstractIncomingMessage) -> None:
        async with message.process():
            job_id = cancelled_job(message.body)
            if job_id is None:
                log.warning("ignoring an unknown signal: %r", message.body[:200])
                return
            on_cancel(job_id)

    await queue.consume(on_message)
    return channel
