"""Which known queues no worker consumes, so an enqueue to one can say so (issue 14).

A job enqueued to a known queue that nobody consumes waits there silently. The API tells the
caller with an HTTP ``Warning`` header and logs a line, without making the enqueue any dearer:
in the background it reads the consumers of every known queue (the catalog's jobs' queues and
``ORCHESTRATOR_QUEUES``) every :data:`INTERVAL` seconds, with the passive declare
``/api/v1/stats`` uses (``BrokerLink.depth``), and an enqueue only looks its queue up in that
table. A count older than :data:`MAX_AGE` is not used (RabbitMQ unreachable, or a queue that
became known since the last read, which is then read at once in the background), so the API
warns only about what RabbitMQ said a few seconds ago and never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

from fastapi import Response

from orchestrator.broker_link import BrokerLink

log = logging.getLogger(__name__)

#: Seconds between two reads of every known queue's consumers.
INTERVAL: Final = 5.0
#: A count older than this is not trusted (a read was missed: RabbitMQ is unreachable).
MAX_AGE: Final = 3 * INTERVAL
#: While RabbitMQ is not connected yet, how often to look again.
_CONNECT_POLL: Final = 0.5
#: The log line about a queue with no consumer is repeated at most this often per queue.
LOG_EVERY: Final = 60.0

KnownQueues = Callable[[], Awaitable[Iterable[str]]]


def warning_value(queues: Iterable[str]) -> str:
    """The ``Warning`` header (RFC 9111's code 199, "miscellaneous warning") for queues that
    have no consumer; queue names hold no quote (``orchestrator.names``)."""
    names = ", ".join(repr(q) for q in sorted(queues))
    return f'199 - "no worker consumes queue {names}: its jobs wait there until one does"'


def warn_unconsumed(watch: ConsumerWatch, queues: Iterable[str], response: Response) -> None:
    """After jobs were created on ``queues``: the ``Warning`` header (and a log line) when one
    of them has no worker consuming it, as RabbitMQ said a few seconds ago."""
    idle = watch.unconsumed(queues)
    if idle:
        response.headers["Warning"] = warning_value(idle)


class ConsumerWatch:
    def __init__(self, broker: BrokerLink, known: KnownQueues, interval: float = INTERVAL):
        self._broker = broker
        self._known = known
        self._interval = interval
        self._max_age = 3 * interval
        #: Per queue: (monotonic time of the read, consumers).
        self._seen: dict[str, tuple[float, int]] = {}
        self._reading: set[str] = set()
        self._logged: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._reads: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-consumer-watch")

    async def stop(self) -> None:
        for task in [self._task, *self._reads]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        while True:
            if not self._broker.connected:
                await asyncio.sleep(_CONNECT_POLL)
                continue
            try:
                await self.read(await self._known())
            except Exception:
                log.debug("could not read the queues' consumers", exc_info=True)
            await asyncio.sleep(self._interval)

    async def read(self, queues: Iterable[str]) -> None:
        """Ask RabbitMQ for the consumers of ``queues`` now (each queue once at a time)."""
        wanted = [q for q in set(queues) if q not in self._reading]
        self._reading.update(wanted)
        try:
            depths = await asyncio.gather(*(self._broker.depth(q) for q in wanted))
        finally:
            self._reading.difference_update(wanted)
        now = time.monotonic()
        for queue, (_, consumers) in zip(wanted, depths, strict=True):
            if consumers is not None:
                self._seen[queue] = (now, consumers)

    def consumers(self, queue: str) -> int | None:
        """The consumers RabbitMQ last reported for ``queue``, or None when that is not recent
        (a queue not read yet is read in the background: the caller never waits)."""
        seen = self._seen.get(queue)
        if seen is not None and time.monotonic() - seen[0] <= self._max_age:
            return seen[1]
        if seen is None and self._broker.connected and queue not in self._reading:
            task = asyncio.create_task(self.read([queue]), name="api-consumer-read")
            self._reads.add(task)
            task.add_done_callback(self._reads.discard)
        return None

    def unconsumed(self, queues: Iterable[str]) -> list[str]:
        """Of ``queues``, those RabbitMQ recently said no one consumes; logs each at most once
        every :data:`LOG_EVERY` seconds."""
        idle = sorted({q for q in queues if self.consumers(q) == 0})
        now = time.monotonic()
        for queue in idle:
            if now - self._logged.get(queue, float("-inf")) >= LOG_EVERY:
                self._logged[queue] = now
                log.warning(
                    "jobs were enqueued to queue %r, which no worker consumes: they wait there "
                    "until a worker serves it (ORCHESTRATOR_WORKER_QUEUES)",
                    queue,
                )
        return idle
