"""Removing what has expired, in bounded batches by database time."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator.db import db_now
from orchestrator.lifecycle import Change, State
from orchestrator.store import expiry as store_expiry
from orchestrator.store import servers as store_servers
from orchestrator.transitions import Transitions


async def expire_jobs(engine: AsyncEngine, transitions: Transitions, *, batch: int) -> int:
    """Delete up to ``batch`` expired Succeeded/Deleted jobs with their history."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        ids = await store_expiry.expired(conn, now, batch)
        return await _remove(conn, transitions, ids, now)


async def expire_failed_jobs(
    engine: AsyncEngine, transitions: Transitions, *, batch: int, failed_for: timedelta
) -> int:
    """Delete up to ``batch`` jobs Failed for longer than ``failed_for`` (only when configured:
    by default Failed jobs stay until a person acts)."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        ids = await store_expiry.failed_before(conn, now - failed_for, batch)
        return await _remove(conn, transitions, ids, now)


async def _remove(
    conn: AsyncConnection, transitions: Transitions, ids: list[uuid.UUID], now: datetime
) -> int:
    """Delete the chosen jobs with their history.

    Before a job goes, its Awaiting continuations become Deleted ("Parent expired") through the
    state machine, so no child waits forever for a parent that no longer exists.
    """
    if not ids:
        return 0
    children = await store_expiry.awaiting_children(conn, ids)
    await transitions.move(
        conn,
        children,
        expected={State.AWAITING},
        target=State.DELETED,
        change=Change("Parent expired"),
        now=now,
    )
    await store_expiry.delete(conn, ids)
    return len(ids)


async def remove_dead_servers(engine: AsyncEngine, *, silent_for: timedelta) -> int:
    """Forget service instances whose heartbeat stopped long ago."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        return await store_servers.remove_silent(conn, now - silent_for)
