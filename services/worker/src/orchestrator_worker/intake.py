"""Taking deliveries from RabbitMQ only for free slots, highest-priority queue first.

A slot is one job this worker may run at once. A delivery is acked as soon as its claim commits,
so RabbitMQ's prefetch no longer bounds what it sends; the intake does. It works in two modes:

- consuming: every queue has a consumer, and each delivery takes a free slot as it arrives. Used
  while the queues were last seen empty, so arrival order is the only order there is.
- pulling: no consumers; each free slot asks the queues with ``basic.get`` in priority order.
  Used whenever slots ran out, so a freed slot always takes waiting ``critical`` work before
  ``default`` work, and no delivery waits unacked while every slot is busy.

No delivery is ever handed back with ``nack``/``reject(requeue)``: on RabbitMQ 3.x every such
return counts towards the quorum queue's ``x-delivery-limit`` (4.x defaults it to 20 and drops),
so under a long overload a healthy job's message would bounce into the dead-letter queue. A
delivery that arrives when no slot is free (consumers were sent more than the free slots while
the intake switched to pulling) goes to ``give_back``: the worker sends its job's message again
through the outbox and then acks it. Each consumer's prefetch is the queue's share of the slots
free when consuming starts, which keeps such deliveries few.

Every delivery taken is tracked until it is settled (:meth:`Intake.settle`). One still unsettled
when the worker closes its connection (a shutdown whose claims could not be written in time, a
round held while the store is away, a delivery that arrived after its consumer was cancelled)
is requeued by RabbitMQ and counts towards the delivery limit; :meth:`Intake.close_unsettled`
counts each of those as returned, reason ``unsettled_at_close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import ChannelInvalidStateError

from orchestrator import metrics
from orchestrator.topology import Topology, declare_base, declare_work_queue
from orchestrator_worker.acks import Acked, SettledTags, ack_together

log = logging.getLogger(__name__)
#: Seconds any one broker call of the intake may take before it counts as failed.
_RPC_TIMEOUT = 5.0


@dataclass
class Delivery:
    queue: str
    message: AbstractIncomingMessage


@dataclass
class _Source:
    name: str
    channel: AbstractChannel
    queue: AbstractQueue
    consumer_tag: str | None = None


class Intake:
    def __init__(
        self,
        connection: AbstractRobustConnection,
        topology: Topology,
        queues: Sequence[str],
        concurrency: int,
        take: Callable[[Delivery], None],
        give_back: Callable[[Delivery], None],
    ) -> None:
        self._connection = connection
        self._topology = topology
        self._queue_names = list(queues)
        self._take = take
        self._give_back = give_back
        self.concurrency = concurrency
        self.free = concurrency
        self._sources: list[_Source] = []
        self._consuming = False
        self._paused = True
        self._stopped = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._switching = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        #: Deliveries taken and not yet settled, by message identity (a message is kept alive
        #: here, so its id is not reused while it is listed).
        self._unsettled: dict[int, Delivery] = {}
        #: The settled delivery tags of each channel the intake has settled on, by the
        #: channel's identity; reset with the channels (see _open_sources).
        self._tags: dict[int, SettledTags] = {}

    async def start(self) -> None:
        await self._open_sources()
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        self._paused = False
        self._task = asyncio.create_task(self._pull_loop(), name="intake")
        self._wake.set()

    async def _open_sources(self) -> None:
        sources = []
        for name in self._queue_names:
            channel = await self._connection.channel()
            await channel.set_qos(prefetch_count=self.concurrency)
            await declare_base(channel, self._topology)
            queue = await declare_work_queue(channel, self._topology, name)
            sources.append(_Source(name, channel, queue))
        self._sources = sources
        # A closed channel's tags are dead (its deliveries were requeued) and its identity may
        # be reused by a new channel, whose tags start at 1 again.
        self._tags = {}

    def _on_reconnect(self, *_: object) -> None:
        self._background.add(asyncio.create_task(self._rearm(), name="intake-rearm"))

    async def _rearm(self) -> None:
        """After a reconnect, start again on fresh channels.

        aio-pika restores robust channels and consumers, but not always: after a connection it
        found stuck, the work queues were seen with no consumer at all while the connection was
        back (a fault test shows it). New channels leave nothing to chance; deliveries of the old
        ones were requeued by RabbitMQ when they closed.
        """
        log.warning("connection to RabbitMQ restored; reopening the intake's channels")
        async with self._switching:
            old, self._sources = self._sources, []
            self._consuming = False
            for source in old:
                source.consumer_tag = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(source.channel.close(), 5)
        while not self._sources:
            try:
                await self._open_sources()
            except Exception:
                log.exception("reopening the intake failed; retrying in 1 s")
                await asyncio.sleep(1.0)
        self._wake.set()

    async def stop(self) -> None:
        """Take nothing more (a delivery arriving later goes to ``give_back``)."""
        self._paused = self._stopped = True
        # Both bounded: a broker call cancelled inside aiormq can swallow the cancellation
        # (the loop then never ends) or wait for a reply that never comes; a stopping worker
        # was seen waiting a minute here. The connection closes next, ending whatever is left.
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=_RPC_TIMEOUT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_consuming(), 2 * _RPC_TIMEOUT)

    def pause(self) -> None:
        """Stop taking work (the store is unreachable); :meth:`resume` starts again."""
        self._paused = True
        self._wake.set()

    def resume(self) -> None:
        self._paused = False
        self._wake.set()

    def release(self) -> None:
        """A slot became free."""
        self.free += 1
        self._wake.set()

    @property
    def unsettled(self) -> int:
        """Deliveries taken and not yet settled."""
        return len(self._unsettled)

    async def settle(self, deliveries: Sequence[Delivery], *, reject: bool = False) -> None:
        """Settle deliveries: each one this intake took and has not settled yet; acks of one
        channel go out together where that is safe (:mod:`orchestrator_worker.acks`). One
        settled already is skipped (acking it again would close its channel)."""
        held: dict[int, tuple[SettledTags, list[Acked]]] = {}
        others: list[Delivery] = []
        for delivery in deliveries:
            message = delivery.message
            channel = _open_channel(message)
            if channel is None:
                # Its channel closed: settle() counts and logs it (RabbitMQ requeued it).
                self._unsettled.pop(id(message), None)
                others.append(delivery)
                continue
            tags = self._settled_tags(channel)
            if self._unsettled.pop(id(message), None) is not None:
                _, group = held.setdefault(id(channel), (tags, []))
                group.append(Acked(delivery.queue, message))
            elif not tags.settled(int(message.delivery_tag or 0)):
                others.append(delivery)
        for tags, group in held.values():
            if reject:
                try:
                    await settle([Delivery(d.queue, d.message) for d in group], reject=True)
                finally:
                    tags.mark([d.tag for d in group])
            else:
                await ack_together(group, tags)
        await settle(others, reject=reject)

    def _settled_tags(self, channel: object) -> SettledTags:
        tags = self._tags.get(id(channel))
        if tags is None:
            tags = self._tags[id(channel)] = SettledTags()
        return tags

    def close_unsettled(self) -> int:
        """Count every delivery still unsettled as returned: the connection is about to close,
        and RabbitMQ requeues them (towards the delivery limit). Call it once nothing settles
        any more (the worker's rounds have stopped); returns how many there were."""
        left, self._unsettled = list(self._unsettled.values()), {}
        for delivery in left:
            metrics.DELIVERIES_RETURNED.labels(delivery.queue, "unsettled_at_close").inc()
        return len(left)

    def _own(self, delivery: Delivery) -> Delivery:
        self._unsettled[id(delivery.message)] = delivery
        return delivery

    @property
    def consumer_count(self) -> int:
        return sum(1 for s in self._sources if s.consumer_tag is not None)

    async def _pull_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._background = {t for t in self._background if not t.done()}
            if self._paused:
                await self._stop_consuming()
                continue
            if self._consuming or self.free <= 0 or not self._sources:
                continue  # (no sources: being reopened after a reconnect)
            try:
                found_nothing = await self._pull()
                if (found_nothing or self.free >= self._consume_threshold) and not self._paused:
                    await self._start_consuming()
            except Exception:
                # A closed channel (broker restart, partition) must not end this loop: a worker
                # whose intake died would hold no consumer and never take work again.
                log.exception("pulling from RabbitMQ failed; retrying")
                await self._stop_consuming()
                await asyncio.sleep(1.0)
                self._wake.set()

    @property
    def _consume_threshold(self) -> int:
        # With this many slots free, every delivery finds a slot at once, so arrival order and
        # priority order agree and consuming (no round trip per message) is the better mode.
        return max(2, self.concurrency // 4)

    async def _pull(self) -> bool:
        """Fill free slots with basic.get in priority order; True when every queue was empty."""
        while 0 < self.free < self._consume_threshold and not self._paused:
            for source in self._sources:
                message = await source.queue.get(no_ack=False, fail=False, timeout=_RPC_TIMEOUT)
                # Taken even if the intake paused meanwhile: its slot is free, and a claim the
                # store refuses is held and written again (never handed back).
                if message is not None:
                    self._assign(Delivery(source.name, message))
                    break
            else:
                return True
        return False

    def _assign(self, delivery: Delivery) -> None:
        self.free -= 1
        self._take(self._own(delivery))

    async def _start_consuming(self) -> None:
        async with self._switching:
            if not self._sources:
                # A re-arm closed the channels while this switch waited for the lock: nothing
                # to consume from yet. Marked consuming with no consumer, the intake would
                # never consume from the new channels (the pull loop skips a consuming
                # intake), and the queues would fill with nobody taking; the re-arm wakes the
                # pull loop once the new channels are open.
                self._consuming = False
                return
            self._consuming = True
            # Per-consumer prefetch, set before each consume: the queue's share of the free
            # slots, so RabbitMQ sends hardly more than can be taken at once.
            share = max(1, self.free // max(1, len(self._sources)))
            for source in self._sources:
                if not self._consuming:
                    break  # slots ran out while consumers were being added
                await asyncio.wait_for(source.channel.set_qos(prefetch_count=share), _RPC_TIMEOUT)
                source.consumer_tag = await asyncio.wait_for(
                    source.queue.consume(self._consumer_for(source.name), no_ack=False),
                    _RPC_TIMEOUT,
                )
        if not self._consuming:
            await self._stop_consuming()

    async def _stop_consuming(self) -> None:
        self._consuming = False
        async with self._switching:
            for source in self._sources:
                if source.consumer_tag is not None:
                    tag, source.consumer_tag = source.consumer_tag, None
                    # Bounded: on a channel that died with its connection the cancel would
                    # wait for a restore that may never come, holding the switch lock.
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(source.queue.cancel(tag), _RPC_TIMEOUT)

    def _consumer_for(self, name: str) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            delivery = Delivery(name, message)
            if self.free <= 0 or self._stopped:
                self._give_back(self._own(delivery))
                return
            self._assign(delivery)
            if self.free == 0 and self._consuming:
                self._consuming = False
                self._background.add(asyncio.create_task(self._switch_to_pulling()))

        return on_message

    async def _switch_to_pulling(self) -> None:
        await self._stop_consuming()
        self._wake.set()


def _open_channel(message: AbstractIncomingMessage) -> object | None:
    """The channel a delivery came on, or None once it has closed (aio-pika raises then)."""
    try:
        return message.channel
    except ChannelInvalidStateError:
        return None


async def settle(deliveries: Sequence[Delivery], *, reject: bool = False) -> None:
    """Ack (or reject into the dead-letter queue) each delivery on its own.

    Not one ``multiple`` ack per channel: deliveries of one channel are settled by different
    paths at different times (claims, hand-backs, a round held while the store is away), so a
    ``multiple`` ack could settle one another path still owns.
    """
    for delivery in deliveries:
        try:
            if reject:
                await delivery.message.reject(requeue=False)
            else:
                await delivery.message.ack()
        except Exception as exc:
            # Its channel closed: RabbitMQ requeued it already (counted towards the delivery
            # limit); a copy of a claimed job will lose the claim, so each job still runs once.
            log.warning("settling a delivery failed (%r); RabbitMQ has requeued it", exc)
            metrics.DELIVERIES_RETURNED.labels(delivery.queue, "channel_lost").inc()
