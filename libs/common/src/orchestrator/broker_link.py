"""The RabbitMQ connection of whoever publishes after enqueueing (the API, a
:class:`~orchestrator.direct.DirectClient`), made in the background so enqueueing goes on while
RabbitMQ is down: the outbox keeps what was not published."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aio_pika.abc import AbstractRobustConnection

from orchestrator.broker import Publisher, connect
from orchestrator.outbox import OutboxSender
from orchestrator.settings import Settings
from orchestrator.topology import Topology, queue_depth

log = logging.getLogger(__name__)
_DEPTH_TIMEOUT = 2.0


class BrokerLink:
    """Connects (retrying every ``retry_seconds``) and then hands a publisher to the sender."""

    def __init__(
        self,
        settings: Settings,
        sender: OutboxSender,
        retry_seconds: float = 3.0,
        *,
        name: str = "orchestrator-api",
    ):
        self._settings = settings
        self._name = name
        self._sender = sender
        self._retry_seconds = retry_seconds
        self.topology = Topology.of(settings)
        self.connection: AbstractRobustConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._connecting = False

    @property
    def connected(self) -> bool:
        return self.connection is not None and not self.connection.is_closed

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_loop(), name=f"{self._name}-broker-connect")

    async def _connect_loop(self) -> None:
        warned = False
        while True:
            self._connecting = True
            try:
                connection = await connect(
                    self._settings.broker_urls,
                    name=self._name,
                    timeout=self._settings.publish_timeout_seconds,
                )
            except Exception as exc:
                self._connecting = False
                if not warned:
                    log.warning(
                        "RabbitMQ unreachable (%r); enqueued jobs wait in the outbox "
                        "and connecting is retried every %.0fs",
                        exc,
                        self._retry_seconds,
                    )
                    warned = True
                await asyncio.sleep(self._retry_seconds)
                continue
            self._connecting = False
            self.connection = connection
            self._sender.publisher = Publisher(
                connection, self.topology, self._settings.publish_timeout_seconds
            )
            log.info("connected to RabbitMQ")
            return

    async def connected_within(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the first connection; whether there is one."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), seconds)
        return self.connected

    async def stop(self) -> None:
        if self._task is not None:
            if self._connecting:
                # Cancelling aio-pika in the middle of connect_robust leaves its reconnect loop
                # running with no handle to close it: let the attempt end first.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        asyncio.shield(self._task), self._settings.publish_timeout_seconds + 1
                    )
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()

    async def depth(self, queue: str) -> tuple[int | None, int | None]:
        """(ready, consumers) of a job queue; (None, None) when the broker cannot say."""
        if self.connection is None or not self.connected:
            return (None, None)
        try:
            async with asyncio.timeout(_DEPTH_TIMEOUT):
                # A fresh channel each time: a failed passive declare closes its channel.
                channel = await self.connection.channel()
                try:
                    ready, consumers = await queue_depth(channel, self.topology, queue)
                finally:
                    if not channel.is_closed:
                        await channel.close()
        except Exception:
            log.debug("queue depth of %r unavailable", queue, exc_info=True)
            return (None, None)
        return (ready, consumers)
