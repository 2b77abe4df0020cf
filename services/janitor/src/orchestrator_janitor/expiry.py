"""Removing what has expired, in bounded batches by database time."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import states
from orchestrator.db import db_now, is_postgres
from orchestrator.states import State
from orchestrator.store import history_table, jobs_table, servers_table


async def expire_jobs(engine: AsyncEngine, *, batch: int, retention: timedelta) -> int:
    """Delete up to ``batch`` expired Succeeded/Deleted jobs with their history.

    Before a job goes, its Awaiting continuations become Deleted ("Parent expired") through the
    state machine, so no child waits forever for a parent that no longer exists.
    """
    async with engine.begin() as conn:
        now = await db_now(conn)
        query = (
            sa.select(jobs_table.c.id)
            .where(
                jobs_table.c.expires_at < now,
                jobs_table.c.state.in_([s.value for s in states.FINAL]),
            )
            .order_by(jobs_table.c.expires_at)
            .limit(batch)
        )
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
        await states.move(
            conn,
            children,
            expected={State.AWAITING},
            target=State.DELETED,
            change=states.Change("Parent expired"),
            now=now,
            retention=retention,
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
