"""Service instances announce themselves in the store and heartbeat there."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import db_now, insert_for
from orchestrator.models import Server

_servers = Server.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ServerInfo:
    role: str
    queues: list[str] = field(default_factory=list)
    concurrency: int = 0
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(
                self, "id", f"{self.role}:{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
            )


async def announce(engine: AsyncEngine, info: ServerInfo) -> datetime:
    async with engine.begin() as conn:
        now = await db_now(conn)
        insert_fn = insert_for(conn)
        stmt = insert_fn(_servers).values(
            id=info.id,
            role=info.role,
            host=info.host,
            pid=info.pid,
            queues=info.queues,
            concurrency=info.concurrency,
            started_at=now,
            heartbeat_at=now,
        )
        await conn.execute(
            stmt.on_conflict_do_update(index_elements=["id"], set_={"heartbeat_at": now})
        )
        return now


async def heartbeat(engine: AsyncEngine, info: ServerInfo) -> None:
    """Refresh this instance's heartbeat; re-announce if a janitor removed the record."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        result = await conn.execute(
            sa.update(_servers).where(_servers.c.id == info.id).values(heartbeat_at=now)
        )
    if result.rowcount == 0:
        await announce(engine, info)


async def withdraw(engine: AsyncEngine, info: ServerInfo) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.delete(_servers).where(_servers.c.id == info.id))
