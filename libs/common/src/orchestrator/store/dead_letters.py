"""Dead letters in the store (``dead_letters``): recorded once per fingerprint, listed newest
first, removed when replayed, discarded or old."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import insert_for, is_postgres
from orchestrator.store.tables import Row, dead_letters, jobs


async def add(conn: AsyncConnection, values: Mapping[str, Any]) -> bool:
    """Record a dead letter (its columns in ``values``); False when one with the same
    fingerprint is recorded already."""
    insert = insert_for(conn)(dead_letters).values(**values)
    inserted = await conn.execute(
        insert.on_conflict_do_nothing(index_elements=["fingerprint"]).returning(dead_letters.c.id)
    )
    return inserted.first() is not None


async def named_job(conn: AsyncConnection, job_id: uuid.UUID) -> Row | None:
    """The state and name of the job a dead letter names, or None: no job by that id."""
    query = sa.select(jobs.c.state, jobs.c.name).where(jobs.c.id == job_id)
    return (await conn.execute(query)).first()


async def newest(conn: AsyncConnection, limit: int, before: int | None) -> list[Row]:
    """Up to ``limit`` dead letters, newest first; ``before``: only those with a smaller id."""
    query = sa.select(dead_letters).order_by(dead_letters.c.id.desc())
    if before is not None:
        query = query.where(dead_letters.c.id < before)
    return list((await conn.execute(query.limit(limit))).all())


async def get(conn: AsyncConnection, letter_id: int) -> Row | None:
    query = sa.select(dead_letters).where(dead_letters.c.id == letter_id)
    return (await conn.execute(query)).first()


async def delete(conn: AsyncConnection, letter_id: int) -> None:
    await conn.execute(sa.delete(dead_letters).where(dead_letters.c.id == letter_id))


async def prune(conn: AsyncConnection, older_than: datetime, *, batch: int) -> int:
    """Remove up to ``batch`` dead letters first seen before ``older_than``, the oldest first;
    on PostgreSQL skipping those another janitor holds."""
    ids = sa.select(dead_letters.c.id).where(dead_letters.c.first_seen_at < older_than)
    ids = ids.order_by(dead_letters.c.first_seen_at).limit(batch)
    if is_postgres(conn):
        ids = ids.with_for_update(skip_locked=True)
    chosen = list((await conn.execute(ids)).scalars())
    if chosen:
        await conn.execute(sa.delete(dead_letters).where(dead_letters.c.id.in_(chosen)))
    return len(chosen)
