"""RabbitMQ topology, declared in one place: every exchange, queue and argument lives here.

Names follow one pattern under a namespace (``orchestrator`` by default, unique per test run):

- ``<ns>.jobs``    direct exchange; routing key = job queue name
- ``<ns>.q.<queue>`` durable quorum work queue per job queue
- ``<ns>.dlx``     fanout exchange that work queues dead-letter into
- ``<ns>.dead``    quorum queue holding dead letters until the janitor records them
- ``<ns>.control`` fanout exchange of signals to workers, one exclusive queue per worker
- ``<ns>.scheduler.wake`` fanout exchange of "an earlier delayed job exists" hints, one
  exclusive queue per scheduler
- ``<ns>.delay.<k>`` (k = 0 … 17) topic exchange and quorum queue of delay level k, whose fixed
  TTL is 2**k seconds; ``<ns>.delay.out`` topic exchange that every work queue is bound to

Delays (retries) pass through the broker by binary decomposition, as NServiceBus does it: a
delayed message's routing key spells its delay in 18 binary digits, most significant first, then
the job queue: 37 s to queue ``default`` is ``0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.1.0.1.default``.
Exchange ``delay.k`` routes a key whose digit for 2**k is 1 into queue ``delay.k`` and a key
whose digit is 0 on to exchange ``delay.(k-1)`` (``delay.0`` on to ``delay.out``). Queue
``delay.k`` holds every message for the same 2**k seconds (a per-queue TTL, so messages expire
in arrival order, never behind a longer one) and dead-letters it, keeping its routing key, to
exchange ``delay.(k-1)``. ``delay.out`` routes ``#.<queue>`` to the work queue. So a message
waits in exactly the levels of its delay's set bits (37 = 32 + 4 + 1). Levels are quorum queues
with at-least-once dead-lettering and ``reject-publish`` overflow, so no hop can lose a message.
One pass covers up to 2**18 - 1 s (about 72 h); a longer delay takes that much, and the worker
that receives the message before the job's due time (database clock) sends it round again for
the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from orchestrator.names import QUEUE_NAME_PATTERN

#: Delay levels 0 … 17: queue ``delay.k`` holds messages for 2**k seconds.
DELAY_LEVELS: Final = 18
#: The longest delay one pass through the levels gives.
MAX_DELAY_PASS: Final = 2**DELAY_LEVELS - 1


def delay_levels(seconds: float) -> list[int]:
    """The levels (highest first) a delay of ``seconds`` (rounded up, capped at one pass)
    waits in: the set bits of its whole seconds."""
    whole = min(MAX_DELAY_PASS, max(0, math.ceil(seconds)))
    return [k for k in reversed(range(DELAY_LEVELS)) if whole >> k & 1]


def delay_routing_key(seconds: float, queue: str) -> str:
    """The routing key of a delayed message: 18 binary digits, most significant first, then
    the job queue (queue names hold no dots)."""
    levels = set(delay_levels(seconds))
    digits = ["1" if k in levels else "0" for k in reversed(range(DELAY_LEVELS))]
    return ".".join([*digits, queue])


def _digit_pattern(level: int, digit: str) -> str:
    """A topic pattern matching keys whose digit for 2**level is ``digit``."""
    return ".".join(["*"] * (DELAY_LEVELS - 1 - level) + [digit, "#"])


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


class BrokerSettings(Protocol):
    """The settings the topology is derived from (``orchestrator.settings.Settings`` has them;
    the broker's layer does not import the settings)."""

    @property
    def broker_namespace(self) -> str: ...
    @property
    def delivery_limit(self) -> int: ...
    @property
    def quorum_group_size(self) -> int | None: ...


@dataclass(frozen=True)
class Topology:
    """Every name and argument, derived from the namespace and the delivery limit."""

    namespace: str = "orchestrator"
    delivery_limit: int = 20
    #: Replicas of each quorum queue (``x-quorum-initial-group-size``); None: one on every
    #: cluster node there is when the queue is declared (RabbitMQ's default).
    quorum_group_size: int | None = None

    @classmethod
    def of(cls, settings: BrokerSettings) -> Topology:
        return cls(settings.broker_namespace, settings.delivery_limit, settings.quorum_group_size)

    def _quorum(self) -> tuple[tuple[str, Any], ...]:
        """The arguments every quorum queue of the topology starts with."""
        size = self.quorum_group_size
        group = (("x-quorum-initial-group-size", size),) if size is not None else ()
        return (("x-queue-type", "quorum"), *group)

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
            arguments=self._quorum(),
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

    @property
    def delay_out_exchange(self) -> ExchangeSpec:
        """Where delayed messages leave the levels: routes ``#.<queue>`` to the work queue."""
        return ExchangeSpec(f"{self.namespace}.delay.out", aio_pika.ExchangeType.TOPIC)

    def delay_exchange(self, level: int) -> ExchangeSpec:
        """The entry of level ``level``; a delayed message is published to the top level's."""
        return ExchangeSpec(f"{self.namespace}.delay.{level}", aio_pika.ExchangeType.TOPIC)

    def delay_below(self, level: int) -> ExchangeSpec:
        """Where level ``level`` hands messages on: the next lower level, or out."""
        return self.delay_exchange(level - 1) if level > 0 else self.delay_out_exchange

    def delay_queue(self, level: int) -> QueueSpec:
        return QueueSpec(
            name=f"{self.namespace}.delay.{level}",
            arguments=(
                *self._quorum(),
                # One TTL for the whole queue: messages expire in order, head first.
                ("x-message-ttl", 2**level * 1000),
                # No routing key of its own: the message keeps its digits for the next level.
                ("x-dead-letter-exchange", self.delay_below(level).name),
                ("x-dead-letter-strategy", "at-least-once"),
                ("x-overflow", "reject-publish"),
            ),
            bindings=((self.delay_exchange(level).name, _digit_pattern(level, "1")),),
        )

    def work_queue(self, queue: str) -> QueueSpec:
        if not QUEUE_NAME_PATTERN.match(queue):
            raise ValueError(f"invalid queue name {queue!r}")
        return QueueSpec(
            name=f"{self.namespace}.q.{queue}",
            arguments=(
                *self._quorum(),
                # RabbitMQ 3.x has no default limit: without one a message that crashes every
                # worker before its claim commits would be redelivered forever.
                ("x-delivery-limit", self.delivery_limit),
                ("x-dead-letter-exchange", self.dead_letter_exchange.name),
                # At-least-once dead-lettering needs reject-publish overflow; otherwise quorum
                # queues silently fall back to at-most-once.
                ("x-dead-letter-strategy", "at-least-once"),
                ("x-overflow", "reject-publish"),
            ),
            bindings=(
                (self.jobs_exchange.name, queue),
                (self.delay_out_exchange.name, f"#.{queue}"),
            ),
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
    await declare_exchange(channel, topology.delay_out_exchange)
    return await declare_exchange(channel, topology.jobs_exchange)


async def declare_delays(channel: AbstractChannel, topology: Topology) -> AbstractExchange:
    """Declare the delay levels, lowest first (each dead-letters into the one below, which
    must exist); returns the top level's exchange, where delayed messages are published."""
    below = await declare_exchange(channel, topology.delay_out_exchange)
    for level in range(DELAY_LEVELS):
        exchange = await declare_exchange(channel, topology.delay_exchange(level))
        await declare_queue(channel, topology.delay_queue(level))
        await below.bind(exchange, _digit_pattern(level, "0"))
        below = exchange
    return below


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
    """(ready messages, consumers) of a job queue, or (0, 0) when it was never declared.

    Only "not found" means empty: any other refusal raises, since the reconciliation would
    read a zero as every message lost.
    """
    try:
        declared = await channel.declare_queue(topology.work_queue(queue).name, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
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
