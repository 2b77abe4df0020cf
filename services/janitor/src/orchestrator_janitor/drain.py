"""Draining the dead-letter queue ``<ns>.dead`` into the store, acking only after commit."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import dead_letters, logs
from orchestrator.broker import connect
from orchestrator.db import db_now
from orchestrator.topology import Topology, declare_base, declare_queue
from orchestrator.transitions import Transitions

log = logging.getLogger(__name__)


class DeadLetterDrain:
    """Takes up to ``batch`` dead letters per tick with ``basic.get``, records them in one
    transaction, then acks them. A janitor that stops in between leaves them unacked: RabbitMQ
    delivers them again and the fingerprint makes the second recording a no-op."""

    def __init__(
        self,
        engine: AsyncEngine,
        amqp_urls: Sequence[str],
        topology: Topology,
        *,
        name: str,
        body_limit: int,
        transitions: Transitions,
        batch: int = 200,
    ) -> None:
        self._engine = engine
        self._amqp_urls = list(amqp_urls)
        self._topology = topology
        self._name = name
        self._body_limit = body_limit
        self._transitions = transitions
        self.batch = batch
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None

    async def tick(self) -> bool:
        """One batch; True when the batch was full (more may be waiting)."""
        queue = await self._ensure_queue()
        if queue is None:
            return False
        messages: list[AbstractIncomingMessage] = []
        while len(messages) < self.batch:
            message = await queue.get(no_ack=False, fail=False, timeout=10)
            if message is None:
                break
            messages.append(message)
        if not messages:
            return False
        new: list[dead_letters.New] = []
        try:
            recorded, failed = await self._record(messages, new)
        except Exception:
            for message in messages:  # back to the queue for the next tick
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
            raise
        await messages[-1].ack(multiple=True)
        for letter in new:
            _report(letter)
        if recorded > 1:
            log.warning("recorded %d dead letter(s); %d job(s) failed by them", recorded, failed)
        return len(messages) >= self.batch

    async def _record(
        self, messages: list[AbstractIncomingMessage], new: list[dead_letters.New]
    ) -> tuple[int, int]:
        letters = []
        for message in messages:
            headers = dead_letters.plain(dict(message.headers or {}))
            died_in = str(dead_letters.last_death(headers).get("queue") or "")
            letters.append(
                dead_letters.Letter(
                    message.body, headers, message.message_id, self._topology.queue_of(died_in)
                )
            )
        async with self._engine.begin() as conn:
            now = await db_now(conn)
            return await dead_letters.record(
                conn,
                letters,
                now,
                body_limit=self._body_limit,
                transitions=self._transitions,
                new=new,
            )

    async def _ensure_queue(self) -> AbstractQueue | None:
        if self._queue is not None:
            return self._queue
        try:
            if self._connection is None:
                self._connection = await connect(self._amqp_urls, name=self._name)
            channel = await self._connection.channel()
            await declare_base(channel, self._topology)
            self._queue = await declare_queue(channel, self._topology.dead_letter_queue)
        except Exception as exc:
            log.warning("RabbitMQ unreachable (%r); dead letters wait in their queue", exc)
            return None
        return self._queue

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()


def _report(letter: dead_letters.New) -> None:
    """One line per dead letter, in the job's log context when it names a job."""
    outcome = "; the job failed" if letter.failed else ""
    if letter.job_id is None:
        log.warning("dead letter (reason %s): %s", letter.reason, letter.why)
        return
    with logs.job_context(letter.job_id, letter.job_name or "?"):
        log.warning(
            "dead letter: job %s %s (reason %s): %s%s",
            letter.job_id,
            letter.job_name or "?",
            letter.reason,
            letter.why,
            outcome,
            extra={"reason": letter.reason, "job_failed": letter.failed},
        )
