"""Recurring job definitions (``recurring_jobs``): saved by id, read with their last run's
state, and the due ones taken by the scheduler. Their runs are ordinary jobs
(:mod:`orchestrator.store.jobs`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import is_postgres
from orchestrator.store.tables import Row, jobs, recurring


async def get(conn: AsyncConnection, recurring_id: str, *, lock: bool = False) -> Row | None:
    """The definition's row, or None; ``lock``: row-locked until commit (PostgreSQL)."""
    query = sa.select(recurring).where(recurring.c.id == recurring_id)
    if lock and is_postgres(conn):
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def schedule_of(conn: AsyncConnection, recurring_id: str) -> Row | None:
    """The definition's cron, timezone and next_run_at, locked until commit; None: no such id."""
    query = (
        sa.select(recurring.c.cron, recurring.c.timezone, recurring.c.next_run_at)
        .where(recurring.c.id == recurring_id)
        .with_for_update()
    )
    return (await conn.execute(query)).first()


async def create(
    conn: AsyncConnection, recurring_id: str, values: Mapping[str, Any], now: datetime
) -> None:
    """Insert a definition, active, created at ``now``, with its other columns from ``values``."""
    await conn.execute(
        sa.insert(recurring).values(id=recurring_id, paused=False, created_at=now, **values)
    )


async def update(conn: AsyncConnection, recurring_id: str, values: Mapping[str, Any]) -> None:
    """Set the columns in ``values`` of one definition."""
    await conn.execute(
        sa.update(recurring).where(recurring.c.id == recurring_id).values(dict(values))
    )


async def set_next_run(
    conn: AsyncConnection, recurring_id: str, next_run_at: datetime | None, error: str | None
) -> None:
    """When the definition runs next (None: never, ``error`` says why)."""
    await conn.execute(
        sa.update(recurring)
        .where(recurring.c.id == recurring_id)
        .values(next_run_at=next_run_at, error=error)
    )


async def record_run(
    conn: AsyncConnection, recurring_id: str, job_id: uuid.UUID, now: datetime
) -> None:
    """The definition's newest run: ``job_id``, created at ``now``."""
    await conn.execute(
        sa.update(recurring)
        .where(recurring.c.id == recurring_id)
        .values(last_run_at=now, last_job_id=job_id, error=None)
    )


async def delete(conn: AsyncConnection, recurring_id: str) -> bool:
    """Remove the definition; False when there was none."""
    result = await conn.execute(sa.delete(recurring).where(recurring.c.id == recurring_id))
    return result.rowcount != 0


def _with_last_state() -> sa.Select[*tuple[Any, ...]]:
    return sa.select(recurring, jobs.c.state.label("last_job_state")).outerjoin(
        jobs, jobs.c.id == recurring.c.last_job_id
    )


async def with_last_state(conn: AsyncConnection, recurring_id: str) -> Row | None:
    """The definition with its last run's state (``last_job_state``), or None."""
    query = _with_last_state().where(recurring.c.id == recurring_id)
    return (await conn.execute(query)).first()


async def all_with_last_state(conn: AsyncConnection) -> list[Row]:
    """Every definition with its last run's state (``last_job_state``), by id."""
    return list((await conn.execute(_with_last_state().order_by(recurring.c.id))).all())


async def job_states(conn: AsyncConnection, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The state of each listed job that exists."""
    rows = await conn.execute(sa.select(jobs.c.id, jobs.c.state).where(jobs.c.id.in_(job_ids)))
    return {row.id: row.state for row in rows}


async def due(conn: AsyncConnection, now: datetime, limit: int) -> list[Row]:
    """Up to ``limit`` active definitions due by ``now``, the earliest first; on PostgreSQL
    locked, skipping those another scheduler holds."""
    query = (
        sa.select(recurring)
        .where(recurring.c.paused == sa.false(), recurring.c.next_run_at <= now)
        .order_by(recurring.c.next_run_at)
        .limit(limit)
    )
    if is_postgres(conn):
        query = query.with_for_update(skip_locked=True)
    return list((await conn.execute(query)).all())


def _earliest() -> sa.Select[Any]:
    return sa.select(sa.func.min(recurring.c.next_run_at)).where(recurring.c.paused == sa.false())


async def earliest_next_run(conn: AsyncConnection) -> datetime | None:
    """The earliest ``next_run_at`` of an active definition (indexed)."""
    value: datetime | None = (await conn.execute(_earliest())).scalar_one_or_none()
    return value


async def clock_and_earliest_next_run(conn: AsyncConnection) -> tuple[datetime, datetime | None]:
    """PostgreSQL's clock and :func:`earliest_next_run` in one round trip."""
    row = (
        await conn.execute(sa.select(sa.func.clock_timestamp(), _earliest().scalar_subquery()))
    ).one()
    return row[0], row[1]
