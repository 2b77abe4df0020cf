"""Leases by name in the store (``leases``): who holds one and until when, by database time. The
scheduler holds ``scheduler`` to be the one active replica."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import insert_for
from orchestrator.store.tables import leases


async def take(
    conn: AsyncConnection, name: str, holder: str, now: datetime, until: datetime
) -> bool:
    """Take or renew the lease ``name`` for ``holder`` until ``until`` in one compare-and-set
    upsert: it succeeds when the lease is free, expired by ``now``, or already ``holder``'s."""
    insert = insert_for(conn)(leases).values(name=name, holder=holder, expires_at=until)
    statement = insert.on_conflict_do_update(
        index_elements=[leases.c.name],
        set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
        where=sa.or_(leases.c.holder == holder, leases.c.expires_at < now),
    ).returning(leases.c.holder)
    return (await conn.execute(statement)).first() is not None


async def give_up(conn: AsyncConnection, name: str, holder: str) -> None:
    """Delete the lease ``name`` if ``holder`` has it."""
    await conn.execute(sa.delete(leases).where(leases.c.name == name, leases.c.holder == holder))
