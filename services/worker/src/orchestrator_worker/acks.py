"""Acking many deliveries of one channel in one frame, without ever settling one that another
path still holds.

Every ack is a frame and a socket write of its own, and one write per job was the worker's
largest single cost in a drain. AMQP's ``multiple`` ack settles every delivery of the channel up
to a tag, but the worker's deliveries of one channel are settled by different paths at
different times (claims, hand-backs, a round held while the store is away). So a ``multiple``
ack names a tag only when every tag of the channel up to it is settled already or in the batch
being acked: delivery tags count up by one on each channel, and :class:`SettledTags` knows
which are settled. A delivery held elsewhere, or one the intake has not seen yet, stops the run;
what lies beyond it is acked one by one, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from aio_pika.abc import AbstractIncomingMessage

from orchestrator import metrics

log = logging.getLogger(__name__)


@dataclass
class SettledTags:
    """The settled delivery tags of one channel: every tag up to ``through``, and ``above``."""

    through: int = 0
    above: set[int] = field(default_factory=set)

    def settled(self, tag: int) -> bool:
        return tag <= self.through or tag in self.above

    def mark(self, tags: Sequence[int]) -> None:
        self.above.update(tags)
        while self.through + 1 in self.above:
            self.through += 1
            self.above.discard(self.through)

    def reach(self, tags: Sequence[int]) -> int | None:
        """The highest of ``tags`` a ``multiple`` ack may name: every tag from the first one not
        settled up to it is settled already or among ``tags`` (None: not even the first)."""
        wanted = set(tags)
        reach = None
        tag = self.through + 1
        while tag in wanted or tag in self.above:
            if tag in wanted:
                reach = tag
            tag += 1
        return reach


@dataclass(frozen=True)
class Acked:
    """A delivery to ack, with its queue (for the metric when its channel is gone)."""

    queue: str
    message: AbstractIncomingMessage

    @property
    def tag(self) -> int:
        return int(self.message.delivery_tag or 0)


async def ack_together(deliveries: Sequence[Acked], settled: SettledTags) -> None:
    """Ack deliveries of one channel: one ``multiple`` ack for as many as :meth:`reach` allows,
    one ack each for the rest; then mark them settled."""
    ordered = sorted(deliveries, key=lambda d: d.tag)
    reach = settled.reach([d.tag for d in ordered])
    covered = [d for d in ordered if reach is not None and d.tag <= reach]
    alone = ordered[len(covered) :] if len(covered) > 1 else ordered
    try:
        if len(covered) > 1:
            await _ack(covered[-1].message, covered, multiple=True)
        for delivery in alone:
            await _ack(delivery.message, [delivery], multiple=False)
    finally:
        # Marked once sent: a concurrent batch of the channel never names these in a
        # ``multiple`` ack before their own ack went out (no tag is acked twice).
        settled.mark([d.tag for d in ordered])


async def _ack(
    message: AbstractIncomingMessage, covers: Sequence[Acked], *, multiple: bool
) -> None:
    try:
        await message.ack(multiple=multiple)
    except Exception as exc:
        # Its channel closed: RabbitMQ requeued them already (counted towards the delivery
        # limit); a copy of a claimed job will lose the claim, so each job still runs once.
        log.warning("acking %d deliveries failed (%r); RabbitMQ requeued them", len(covers), exc)
        for delivery in covers:
            metrics.DELIVERIES_RETURNED.labels(delivery.queue, "channel_lost").inc()
