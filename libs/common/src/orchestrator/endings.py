"""What follows when jobs end, inside the transaction that ends them: an applied hook.

A job has *ended* when it enters one of :data:`orchestrator.lifecycle.ENDED`. Its ``Awaiting``
children then move as :func:`~orchestrator.lifecycle.continuation_released` and
:func:`~orchestrator.lifecycle.continuation_deleted` say. A deleted child ends in turn, so
deletion runs down a chain of any length (iteratively, one level a turn, not by recursion). A
batch member's first ending sets ``first_ended_at`` and counts in ``batches.ended``; the change
that brings ``ended`` to ``total`` enqueues the batch's continuation, once: ``first_ended_at`` is
set only once, and ``ended`` only grows.

Every role's :class:`~orchestrator.transitions.Transitions` runs :class:`FollowEndings` on every
change (see :mod:`orchestrator.composition`). The children it moves go through the
:class:`~orchestrator.transitions.Applied`'s ``mover``, which does not follow their endings
again (this loop does) and does not elect (a continuation's fate follows its parent's); the
other hooks and the filters' ``applied`` see them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import outbox
from orchestrator.lifecycle import (
    ENDED,
    Change,
    RowChange,
    State,
    continuation_deleted,
    continuation_released,
)
from orchestrator.store import continuations
from orchestrator.store.tables import Row
from orchestrator.transitions import Applied, Mover


class FollowEndings:
    """The applied hook: release the continuations of the jobs that just ended, delete those
    that die with them (down the chain) and count batch members; the outbox entries of every
    job this enqueued go to ``context.pending``."""

    def writes(self, target: State) -> bool:
        return target in ENDED

    async def applied(self, context: Applied) -> None:
        if context.target in ENDED:
            context.pending += await _Follower(context.conn, context.mover, context.now).follow(
                [(r.id, r.batch_id) for r in context.rows], context.target
            )


class _Follower:
    def __init__(self, conn: AsyncConnection, mover: Mover, now: datetime) -> None:
        self.conn = conn
        self.mover = mover
        self.now = now

    async def follow(
        self, frontier: list[tuple[uuid.UUID, uuid.UUID | None]], state: State
    ) -> list[outbox.Pending]:
        pending: list[outbox.Pending] = []
        while frontier:
            members = [job_id for job_id, batch_id in frontier if batch_id is not None]
            pending += await self._batch_progress(members)
            children = await continuations.awaiting_children(
                self.conn, [job_id for job_id, _ in frontier]
            )
            release = [c for c in children if continuation_released(state, c.continue_on)]
            pending += await self._enqueue(release, f"Parent {{}} {state.value}")
            doomed = [c for c in children if continuation_deleted(state, c.continue_on)]
            deleted = set(await self._move(doomed, "Parent {} was deleted", State.DELETED))
            frontier = [(c.id, c.batch_id) for c in doomed if c.id in deleted]
            state = State.DELETED
        return pending

    async def _move(
        self, children: Sequence[Row], reason: str, target: State
    ) -> list[uuid.UUID]:
        """Move Awaiting children; each history row names the child's own parent."""
        if not children:
            return []
        items = [
            RowChange(c.id, Change(reason.format(c.parent_id), data=_parent(c))) for c in children
        ]
        return list(
            await self.mover.move_each(
                self.conn, items, expected={State.AWAITING}, target=target, now=self.now
            )
        )

    async def _enqueue(self, jobs: Sequence[Row], reason: str) -> list[outbox.Pending]:
        moved = set(await self._move(jobs, reason, State.ENQUEUED))
        return await self._publications([j for j in jobs if j.id in moved])

    async def _publications(self, jobs: Sequence[Row]) -> list[outbox.Pending]:
        publications = [outbox.Publication(j.id, j.queue, j.trace_context or {}) for j in jobs]
        return await outbox.add(self.conn, publications, self.now)

    async def _batch_progress(self, members: Sequence[uuid.UUID]) -> list[outbox.Pending]:
        """Count members ending for the first time; enqueue completed batches' continuations."""
        if not members:
            return []
        counts = await continuations.mark_first_endings(self.conn, members, self.now)
        released: dict[uuid.UUID, uuid.UUID] = {}
        for batch_id in sorted(counts, key=str):  # one lock order: two endings never deadlock
            added = counts[batch_id]
            progress = await continuations.count_ended(self.conn, batch_id, added)
            if progress.ended >= progress.total > progress.ended - added:
                await continuations.complete_batch(self.conn, batch_id, self.now)
                if progress.continuation_id is not None:
                    released[progress.continuation_id] = batch_id
        return await self._release_batch_continuations(released)

    async def _release_batch_continuations(
        self, of: Mapping[uuid.UUID, uuid.UUID]
    ) -> list[outbox.Pending]:
        """Enqueue each completed batch's continuation (``of``: continuation id -> batch id)."""
        if not of:
            return []
        items = [
            RowChange(job_id, Change(f"Batch {batch_id} completed", data={"batch": str(batch_id)}))
            for job_id, batch_id in of.items()
        ]
        moved = await self.mover.move_each(
            self.conn, items, expected={State.AWAITING}, target=State.ENQUEUED, now=self.now
        )
        return await self._publications(await continuations.routing(self.conn, list(moved)))


def _parent(child: Row) -> dict[str, Any] | None:
    return {"parent": str(child.parent_id)} if child.parent_id is not None else None
