"""Service instances announce themselves in the store and heartbeat there."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import db_now
from orchestrator.store import servers as store_servers


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
        instance = store_servers.Instance(
            info.id, info.role, info.host, info.pid, info.queues, info.concurrency
        )
        await store_servers.announce(conn, instance, now)
        return now


async def heartbeat(engine: AsyncEngine, info: ServerInfo) -> None:
    """Refresh this instance's heartbeat; re-announce if a janitor removed the record."""
    async with engine.begin() as conn:
        known = await store_servers.heartbeat(conn, info.id, await db_now(conn))
    if not known:
        await announce(engine, info)


async def withdraw(engine: AsyncEngine, info: ServerInfo) -> None:
    async with engine.begin() as conn:
        await store_servers.withdraw(conn, info.id)
