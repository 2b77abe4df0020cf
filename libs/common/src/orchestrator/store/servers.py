"""The servers table: each running role instance announces itself, heartbeats and withdraws;
the scheduler reads the heartbeats and consumed queues for its gauges, the janitor forgets
instances silent for too long."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import insert_for
from orchestrator.store.tables import Row, servers


@dataclass(frozen=True)
class Instance:
    """What an instance's row says about it."""

    id: str
    role: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int


async def announce(conn: AsyncConnection, instance: Instance, now: datetime) -> None:
    """Insert the instance's row, started and heartbeating at ``now``; an instance already
    there only heartbeats."""
    insert = insert_for(conn)(servers).values(
        id=instance.id,
        role=instance.role,
        host=instance.host,
        pid=instance.pid,
        queues=instance.queues,
        concurrency=instance.concurrency,
        started_at=now,
        heartbeat_at=now,
    )
    await conn.execute(
        insert.on_conflict_do_update(index_elements=["id"], set_={"heartbeat_at": now})
    )


async def heartbeat(conn: AsyncConnection, server_id: str, now: datetime) -> bool:
    """Refresh the instance's heartbeat; False when it has no row (a janitor removed it)."""
    result = await conn.execute(
        sa.update(servers).where(servers.c.id == server_id).values(heartbeat_at=now)
    )
    return result.rowcount != 0


async def withdraw(conn: AsyncConnection, server_id: str) -> None:
    await conn.execute(sa.delete(servers).where(servers.c.id == server_id))


async def remove_silent(conn: AsyncConnection, since: datetime) -> int:
    """Forget every instance whose last heartbeat is older than ``since``; returns how many."""
    result = await conn.execute(sa.delete(servers).where(servers.c.heartbeat_at < since))
    return int(result.rowcount or 0)


async def heartbeats(conn: AsyncConnection) -> list[Row]:
    """Every instance's id, role and heartbeat_at."""
    query = sa.select(servers.c.id, servers.c.role, servers.c.heartbeat_at)
    return list((await conn.execute(query)).all())


async def consumed_queues(conn: AsyncConnection) -> set[str]:
    """Every queue some registered instance consumes."""
    queues: set[str] = set()
    for consumed in (await conn.execute(sa.select(servers.c.queues))).scalars():
        queues.update(consumed)
    return queues
