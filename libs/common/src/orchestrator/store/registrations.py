"""The job catalog in the store: what workers can run (name, queue, parameter schema, options),
one row per name and schema, the newest registration of a name winning."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.catalog import Registration
from orchestrator.db import insert_for
from orchestrator.store.tables import registrations


async def save(conn: AsyncConnection, found: Sequence[Registration], now: datetime) -> None:
    """Record (or refresh) what a worker can run; the newest registration of a name wins."""
    insert_fn = insert_for(conn)
    for reg in found:
        stmt = insert_fn(registrations).values(
            name=reg.name,
            schema_hash=reg.schema_hash,
            queue=reg.queue,
            parameters=reg.parameters,
            json_schema=reg.json_schema,
            options=reg.options,
            registered_at=now,
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["name", "schema_hash"], set_={"registered_at": now}
            )
        )


async def newest(conn: AsyncConnection) -> dict[str, Registration]:
    """The newest stored registration of every job name."""
    rows = (
        await conn.execute(
            sa.select(registrations).order_by(registrations.c.name, registrations.c.registered_at)
        )
    ).all()
    found: dict[str, Registration] = {}
    for row in rows:
        found[row.name] = Registration(
            name=row.name,
            queue=row.queue,
            parameters=list(row.parameters),
            json_schema=dict(row.json_schema),
            schema_hash=row.schema_hash,
            options=dict(row.options),
        )
    return found


async def queues(conn: AsyncConnection) -> set[str]:
    """Every job's default queue, as registered."""
    return set((await conn.execute(sa.select(registrations.c.queue).distinct())).scalars())
