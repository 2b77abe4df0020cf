"""Removing what has expired, in bounded batches by database time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator.db import db_now, is_postgres
from orchestrator.lifecycle import FINAL, Change, State
from orchestrator.store import history_table, jobs_table, servers_table
from orchestrator.transitions import Transitions


async def expire_jobs(engine: AsyncEngine, transitions: Transitions, *, batch: int) -> int:
    """Delete up to ``batch`` expired Succeeded/Deleted jobs with their history."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        expired = sa.and_(
            jobs_table.c.expires_at < now,
            jobs_table.c.state.in_([s.value for s in FINAL]),
        )
        return await _remove(conn, transitions, expired, jobs_table.c.expires_at, now, batch)


async def expire_failed_jobs(
    engine: AsyncEngine, transitions: Transitions, *, batch: int, failed_for: timedelta
) -> int:
    """Delete up to ``batch`` jobs Failed for longer than ``failed_for`` (only when configured:
    by default Failed jobs stay until a person acts)."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        old = sa.and_(
            jobs_table.c.state == State.FAILED.value,
            jobs_table.c.state_changed_at < now - failed_for,
        )
        return await _remove(conn, transitions, old, jobs_table.c.state_changed_at, now, batch)


async def _remove(
    conn: AsyncConnection,
    transitions: Transitions,
    condition: sa.ColumnElement[bool],
    oldest_first: sa.ColumnElement[Any],
    now: datetime,
    batch: int,
) -> int:
    """Delete up to ``batch`` jobs matching ``condition`` with their history.

    Before a job goes, its Awaiting continuations become Deleted ("Parent expired") through the
    state machine, so no child waits forever for a parent that no longer exists.
    """
    query = sa.select(jobs_table.c.id).where(condition).order_by(oldest_first).limit(batch)
    if is_postgres(conn):
        # Several janitors split the work instead of waiting on each other's rows.
        query = query.with_for_update(skip_locked=True)
    ids = list((await conn.execute(query)).scalars())
    if not ids:
        return 0
    children = list(
        (
            await conn.execute(
                sa.select(jobs_table.c.id).where(
                    jobs_table.c.parent_id.in_(ids),
                    jobs_table.c.state == State.AWAITING.value,
                )
            )
        ).scalars()
    )
    await transitions.move(
        conn,
        children,
        expected={State.AWAITING},
        target=State.DELETED,
        change=Change("Parent expired"),
        now=now,
    )
    await conn.execute(sa.delete(history_table).where(history_table.c.job_id.in_(ids)))
    await conn.execute(sa.delete(jobs_table).where(jobs_table.c.id.in_(ids)))
    return len(ids)


async def remove_dead_servers(engine: AsyncEngine, *, silent_for: timedelta) -> int:
    """Forget service instances whose heartbeat stopped long ago."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        result = await conn.execute(
            sa.delete(servers_table).where(servers_table.c.heartbeat_at < now - silent_for)
        )
        return int(result.rowcount or 0)
