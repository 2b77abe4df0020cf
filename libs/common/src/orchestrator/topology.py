"""RabbitMQ topology, declared in one place: every exchange, queue and argument lives here.

Names follow one pattern under a namespace (``orchestrator`` by default, unique per test run):

- ``<ns>.jobs``    direct exchange; routing key = job queue name
- ``<ns>.q.<queue>`` durable quorum work queue per job queue
- ``<ns>.dlx``     fanout exchange that work queues dead-letter into
- ``<ns>.dead``    quorum queue holding dead letters until the janitor records them
- ``<ns>.control`` fanout exchange of signals to workers, one exclusive queue per worker
- ``<ns>.scheduler.wake`` fanout exchange of "an earlier delayed job exists" hints, one
  exclusive queue per scheduler
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from orchestrator.settings import QUEUE_NAME_PATTERN


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: aio_pika.ExchangeType


@dataclass(frozen=True)
class QueueSpec:
    name: str
    #: ``x-`` arguments; immutable once the queue exists, so changes need a new queue name.
    arguments: tuple[tuple[str, Any], ...]
    #: (exchange, routing key) pairs this queue is bound with.
    bindings: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Topology:
    """Every name and argument, derived from the namespace and the delivery limit."""

    namespace: str = "orchestrator"
    delivery_limit: int = 20

    @property
    def jobs_exchange(self) -> ExchangeSpec:
        return ExchangeSpec(f"{self.namespace}.jobs", aio_pika.ExchangeType.DIRECT)

    @property
    def dead_letter_exchange(self) -> ExchangeSpec:
        return ExchangeSpec(f"{self.namespace}.dlx", aio_pika.ExchangeType.FANOUT)

    @property
    def dead_letter_queue(self) -> QueueSpec:
        return QueueSpec(
            name=f"{self.namespace}.dead",
            arguments=(("x-queue-type", "quorum"),),
            bindings=((self.dead_letter_exchange.name, ""),),
        )

    @property
    def control_exchange(self) -> ExchangeSpec:
        """Fanout of signals to every running worker (today: cancel a running job)."""
        return ExchangeSpec(f"{self.namespace}.control", aio_pika.ExchangeType.FANOUT)

    @property
    def scheduler_wake_exchange(self) -> ExchangeSpec:
        """Fanout of wake-ups to every scheduler: a delayed job due at ``{"due_at": epoch}``
        was stored. Hints only: each scheduler also wakes at least every few seconds."""
        return ExchangeSpec(f"{self.namespace}.scheduler.wake", aio_pika.ExchangeType.FANOUT)

    def work_queue(self, queue: str) -> QueueSpec:
        if not QUEUE_NAME_PATTERN.match(queue):
            raise ValueError(f"invalid queue name {queue!r}")
        return QueueSpec(
            name=f"{self.namespace}.q.{queue}",
            arguments=(
                ("x-queue-type", "quorum"),
                # RabbitMQ 3.x has no default limit: without one a message that crashes every
                # worker before its claim commits would be redelivered forever.
                ("x-delivery-limit", self.delivery_limit),
                ("x-dead-letter-exchange", self.dead_letter_exchange.name),
                # At-least-once dead-lettering needs reject-publish overflow; otherwise quorum
                # queues silently fall back to at-most-once.
                ("x-dead-letter-strategy", "at-least-once"),
                ("x-overflow", "reject-publish"),
            ),
            bindings=((self.jobs_exchange.name, queue),),
        )

    def queue_of(self, work_queue_name: str) -> str | None:
        """The job queue name of a work queue name, or None for another queue."""
        prefix = f"{self.namespace}.q."
        return work_queue_name[len(prefix) :] if work_queue_name.startswith(prefix) else None


async def declare_exchange(channel: AbstractChannel, spec: ExchangeSpec) -> AbstractExchange:
    return await channel.declare_exchange(spec.name, spec.type, durable=True)


async def declare_queue(channel: AbstractChannel, spec: QueueSpec) -> AbstractQueue:
    queue = await channel.declare_queue(spec.name, durable=True, arguments=dict(spec.arguments))
    for exchange, routing_key in spec.bindings:
        await queue.bind(exchange, routing_key)
    return queue


async def declare_base(channel: AbstractChannel, topology: Topology) -> AbstractExchange:
    """Declare the exchanges and the dead-letter queue; returns the jobs exchange."""
    await declare_exchange(channel, topology.dead_letter_exchange)
    await declare_queue(channel, topology.dead_letter_queue)
    return await declare_exchange(channel, topology.jobs_exchange)


async def declare_work_queue(
    channel: AbstractChannel, topology: Topology, queue: str
) -> AbstractQueue:
    return await declare_queue(channel, topology.work_queue(queue))


async def declare_control_queue(channel: AbstractChannel, topology: Topology) -> AbstractQueue:
    """A worker's own signal queue: exclusive, gone with its connection.

    Signals are hints: a worker that misses one (it was reconnecting) still notices at its next
    lease renewal that the job is no longer its own.
    """
    exchange = await declare_exchange(channel, topology.control_exchange)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange)
    return queue


async def queue_depth(channel: AbstractChannel, topology: Topology, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of a job queue, or (0, 0) when it was never declared."""
    try:
        declared = await channel.declare_queue(topology.work_queue(queue).name, passive=True)
    except aio_pika.exceptions.ChannelClosed:
        return (0, 0)
    result = declared.declaration_result
    return (result.message_count or 0, result.consumer_count or 0)


async def declare_scheduler_wake_queue(
    channel: AbstractChannel, topology: Topology
) -> AbstractQueue:
    """A scheduler's own wake-up queue: exclusive, gone with its connection."""
    exchange = await declare_exchange(channel, topology.scheduler_wake_exchange)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange)
    return queue
