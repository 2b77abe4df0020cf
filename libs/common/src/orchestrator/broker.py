"""Connecting to RabbitMQ and publishing job messages safely.

aio-pika's defaults lose messages silently (non-persistent messages, returns that do not raise);
everything that publishes goes through :class:`Publisher`, which sets them right.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from opentelemetry.trace import SpanKind
from yarl import URL

from orchestrator import propagation
from orchestrator.topology import (
    ExchangeSpec,
    Topology,
    declare_base,
    declare_delays,
    declare_exchange,
    declare_work_queue,
    delay_routing_key,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobMessage:
    """The wake-up a job's queue carries: only the id; the store holds everything else."""

    job_id: uuid.UUID
    queue: str
    headers: Mapping[str, Any] = field(default_factory=dict)
    #: When the job entered Enqueued (epoch seconds), for the enqueue→start latency metric.
    enqueued_at: float | None = None
    #: Whole seconds to wait in the broker's delay levels before reaching the queue.
    delay_seconds: int = 0

    def body(self) -> bytes:
        return json.dumps({"job_id": str(self.job_id)}).encode()


def decode_job_id(body: bytes) -> uuid.UUID | None:
    """The job id in a message body, or None when the body is not one of ours."""
    try:
        return uuid.UUID(json.loads(body)["job_id"])
    except (ValueError, KeyError, TypeError):
        return None


ENQUEUED_AT_HEADER = "x-enqueued-at"


def _enqueued_header(message: JobMessage) -> dict[str, Any]:
    return {} if message.enqueued_at is None else {ENQUEUED_AT_HEADER: message.enqueued_at}


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over the addresses of several broker nodes (a cluster).

    aio-pika's robust connection reconnects to its one URL, restoring channels, consumers and
    declarations. This one takes the next address at every connection attempt after the first,
    so losing a node costs one reconnection to another node (or a few, while more are down),
    with the same restoration there. It relies on one thing of aio-pika's: ``Connection.connect``
    reads ``url`` once per attempt (``tests/faults/test_failover.py`` holds it to that).
    """

    def __init__(self, addresses: Sequence[str], *, first: int = 0, **kwargs: Any) -> None:
        if not addresses:
            raise ValueError("no broker address given")
        self.addresses = tuple(URL(address) for address in addresses)
        self._next = first % len(self.addresses)
        #: The address of the latest attempt (what the connection is, or was last, bound to).
        self.current = self.addresses[self._next]
        super().__init__(self.current, **kwargs)
        self._next = first % len(self.addresses)  # __init__ read ``url`` once, for its options

    @property
    def url(self) -> URL:
        """The address for the connection attempt being made: the next one in turn."""
        self.current = self.addresses[self._next]
        self._next = (self._next + 1) % len(self.addresses)
        return self.current

    @url.setter
    def url(self, value: URL) -> None:
        # Connection.__init__ stores the first address; update_secret a new password, which
        # every node of a cluster shares.
        if value.password != self.current.password:
            self.addresses = tuple(a.with_password(value.password) for a in self.addresses)
            self.current = self.current.with_password(value.password)

    def __str__(self) -> str:
        shown = self.current
        return str(shown.with_password("******") if shown.password else shown)

    async def _on_connected(self) -> None:
        await super()._on_connected()
        if len(self.addresses) > 1:
            log.info("connected to RabbitMQ at %s:%s", self.current.host, self.current.port)


def broker_addresses(urls: str | Sequence[str]) -> list[str]:
    """One URL, a comma-separated list, or a sequence of URLs, as a list."""
    if isinstance(urls, str):
        urls = urls.split(",")
    return [url.strip() for url in urls if url.strip()]


async def connect(
    urls: str | Sequence[str], *, name: str, timeout: float = 10.0
) -> AbstractRobustConnection:
    """A robust (self-reconnecting) connection to one of ``urls`` (the nodes of a cluster, or
    one broker), failing over between them; raises if none is reachable now.

    Each process starts at a random address, so a cluster's connections spread over its nodes.
    """
    addresses = broker_addresses(urls)
    start = random.randrange(len(addresses)) if addresses else 0  # noqa: S311  (spreading load)
    failure: BaseException = ValueError("no broker address given")
    for offset in range(len(addresses)):
        connection = FailoverConnection(
            addresses, first=start + offset, client_properties={"connection_name": name}
        )
        try:
            await connection.connect(timeout=timeout)
        except Exception as exc:
            failure = exc
            with contextlib.suppress(Exception):
                await connection.close()
            continue
        return connection
    raise failure


class Publisher:
    """Publishes job messages: persistent, mandatory, confirmed, to declared queues only."""

    def __init__(self, connection: AbstractRobustConnection, topology: Topology, timeout: float):
        self._connection = connection
        self._topology = topology
        self._timeout = timeout
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        #: The top delay level's exchange, declared on the first delayed message.
        self._delays: AbstractExchange | None = None
        self._declared: set[str] = set()
        self._lock = asyncio.Lock()

    async def _ready(self) -> AbstractExchange:
        if self._exchange is None or self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            self._exchange = await declare_base(self._channel, self._topology)
            self._delays = None
            self._declared.clear()
        return self._exchange

    async def _ensure_delays(self) -> None:
        if self._delays is None:
            assert self._channel is not None
            self._delays = await declare_delays(self._channel, self._topology)

    async def _ensure_queue(self, queue: str) -> None:
        if queue not in self._declared:
            assert self._channel is not None
            await declare_work_queue(self._channel, self._topology, queue)
            self._declared.add(queue)

    async def publish(self, messages: Sequence[JobMessage]) -> list[bool]:
        """Publish all, confirms in flight together; True for each message the broker confirmed."""
        if not messages:
            return []
        try:
            async with self._lock:
                exchange = await asyncio.wait_for(self._ready(), self._timeout)
                for queue in {m.queue for m in messages}:
                    await asyncio.wait_for(self._ensure_queue(queue), self._timeout)
                if any(m.delay_seconds > 0 for m in messages):
                    await asyncio.wait_for(self._ensure_delays(), self._timeout)
        except Exception as exc:
            log.warning("broker not ready for publishing: %r", exc)
            self._exchange = None
            return [False] * len(messages)
        results = await asyncio.gather(
            *(self._publish_one(exchange, m) for m in messages), return_exceptions=True
        )
        sent = [result is True for result in results]
        if not all(sent):
            failures = [r for r in results if r is not True]
            log.warning("%d of %d publishes failed: %r", len(failures), len(sent), failures[0])
        return sent

    async def signal(
        self, payload: Mapping[str, Any], exchange_spec: ExchangeSpec | None = None
    ) -> bool:
        """Send a signal to every worker (or to another fanout: ``exchange_spec``); True when
        the broker took it.

        Not ``mandatory``: with no worker running nobody needs the signal, and a returned
        message is not an error here.
        """
        try:
            async with self._lock:
                await asyncio.wait_for(self._ready(), self._timeout)
                assert self._channel is not None
                spec = exchange_spec or self._topology.control_exchange
                exchange = await declare_exchange(self._channel, spec)
            await exchange.publish(
                aio_pika.Message(json.dumps(dict(payload)).encode()),
                routing_key="",
                mandatory=False,
                timeout=self._timeout,
            )
        except Exception as exc:  # a lost signal is caught up by lease renewal
            log.warning("signal %r not sent: %r", dict(payload), exc)
            return False
        return True

    async def _publish_one(self, exchange: AbstractExchange, message: JobMessage) -> bool:
        # The producer span is a child of the context the outbox entry kept; the message carries
        # the producer span's own context, so the run is its child.
        with propagation.tracer.start_as_current_span(
            f"publish {message.queue}",
            context=propagation.context_from(message.headers),
            kind=SpanKind.PRODUCER,
            attributes={
                **propagation.job_attributes(message.job_id, queue=message.queue),
                "messaging.system": "rabbitmq",
                "messaging.destination.name": message.queue,
                "orchestrator.delay_seconds": message.delay_seconds,
            },
        ):
            headers = {**message.headers, **propagation.current_headers()}
            amqp_message = aio_pika.Message(
                body=message.body(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(message.job_id),
                headers={**headers, **_enqueued_header(message)},
            )
            routing_key = message.queue
            if message.delay_seconds > 0 and self._delays is not None:
                exchange = self._delays
                routing_key = delay_routing_key(message.delay_seconds, message.queue)
            await exchange.publish(
                amqp_message, routing_key=routing_key, mandatory=True, timeout=self._timeout
            )
        return True
