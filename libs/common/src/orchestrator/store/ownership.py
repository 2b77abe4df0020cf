"""A worker's hold on the jobs it runs: renewing their leases, the history row of a run it
holds (where an overrun is flagged), and what a hand-back at shutdown needs (the move itself
goes through :class:`orchestrator.transitions.Transitions`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import is_postgres
from orchestrator.lifecycle import State
from orchestrator.store.moves import in_lock_order
from orchestrator.store.tables import Row, history, jobs

#: What a hand-back returns of each job it put back: what its new message needs.
ROUTING_COLUMNS: Final[tuple[sa.Column[Any], ...]] = (jobs.c.queue, jobs.c.trace_context)


def owned_by(worker_id: str) -> sa.ColumnElement[bool]:
    """A job claimed (last) by ``worker_id``."""
    return jobs.c.worker_id == worker_id


async def renew_leases(
    conn: AsyncConnection,
    worker_id: str,
    job_ids: Sequence[uuid.UUID],
    lease_until: datetime,
) -> set[uuid.UUID]:
    """Hold the leases of the listed jobs still Processing under ``worker_id`` until
    ``lease_until``; returns those ids."""
    mine = sa.and_(
        jobs.c.worker_id == worker_id,
        jobs.c.state == State.PROCESSING.value,
        jobs.c.id.in_(list(job_ids)),
    )
    if is_postgres(conn):
        # In ascending id order, as the outcome writer locks these rows (a plain UPDATE
        # took them in its plan's order and deadlocked with it).
        mine = sa.and_(mine, in_lock_order(mine))
    renewed = await conn.execute(
        sa.update(jobs).where(mine).values(lease_until=lease_until).returning(jobs.c.id)
    )
    return set(renewed.scalars())


async def run_entry(
    conn: AsyncConnection, job_id: uuid.UUID, worker_id: str, attempt: int
) -> Row | None:
    """The latest Processing history row of ``job_id`` (id and data) while that run, its
    ``attempt``, is still ``worker_id``'s claim; else None."""
    query = (
        sa.select(history.c.id, history.c.data)
        .select_from(history.join(jobs, jobs.c.id == history.c.job_id))
        .where(
            history.c.job_id == job_id,
            history.c.state == State.PROCESSING.value,
            jobs.c.state == State.PROCESSING.value,
            jobs.c.worker_id == worker_id,
            jobs.c.attempt == attempt,
        )
        .order_by(history.c.id.desc())
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def set_entry_data(conn: AsyncConnection, entry_id: int, data: dict[str, Any]) -> None:
    """Replace the data of the history row ``entry_id``."""
    await conn.execute(sa.update(history).where(history.c.id == entry_id).values(data=data))
