"""The outbox's rows: publications committed with the change that needs them, deleted once the
broker confirmed them. Publishing and the relay's rules live in :mod:`orchestrator.outbox`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator.db import fetch_autocommit
from orchestrator.store.tables import Row, outbox


async def add(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert entries (job_id, queue, delay_seconds, headers, created_at, attempts); returns
    their ids in the order given."""
    result = await conn.execute(
        sa.insert(outbox).returning(outbox.c.id, sort_by_parameter_order=True), list(rows)
    )
    return [row.id for row in result.all()]


async def delete(conn: AsyncConnection, entry_ids: Sequence[int]) -> None:
    """Forget entries the broker confirmed."""
    await conn.execute(sa.delete(outbox).where(outbox.c.id.in_(entry_ids)))


async def count_attempt(conn: AsyncConnection, entry_ids: Sequence[int]) -> None:
    """One more publish attempt for entries the broker did not confirm."""
    await conn.execute(
        sa.update(outbox).where(outbox.c.id.in_(entry_ids)).values(attempts=outbox.c.attempts + 1)
    )


# Both results of a round in one statement (outside a transaction: each part stands alone).
_DELETE_AND_COUNT = """
WITH gone AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]) RETURNING 1),
     kept AS (UPDATE outbox SET attempts = attempts + 1 WHERE id = ANY($2::bigint[]) RETURNING 1)
SELECT (SELECT count(*) FROM gone) AS deleted, (SELECT count(*) FROM kept) AS kept
"""


async def delete_and_count_attempt_now(
    engine: AsyncEngine, confirmed: Sequence[int], unconfirmed: Sequence[int]
) -> None:
    """:func:`delete` ``confirmed`` and :func:`count_attempt` ``unconfirmed``, committed at
    once in one round trip (PostgreSQL only)."""
    await fetch_autocommit(engine, _DELETE_AND_COUNT, confirmed, unconfirmed)


async def created_before(
    conn: AsyncConnection, before: datetime, limit: int, *, lock: bool
) -> list[Row]:
    """Up to ``limit`` entries created before ``before``, oldest id first; ``lock``: row-locked,
    skipping entries another relay holds (PostgreSQL)."""
    query = sa.select(outbox).where(outbox.c.created_at < before).order_by(outbox.c.id).limit(limit)
    if lock:
        query = query.with_for_update(skip_locked=True)
    return list((await conn.execute(query)).all())


async def backlog(conn: AsyncConnection) -> int:
    """Every entry not yet confirmed."""
    return int((await conn.execute(sa.select(sa.func.count()).select_from(outbox))).scalar_one())


async def unsent_to(conn: AsyncConnection, queue: str) -> int:
    """Entries for ``queue`` not yet confirmed that wait in no delay level (their message is
    not in the broker yet)."""
    query = (
        sa.select(sa.func.count())
        .select_from(outbox)
        .where(outbox.c.queue == queue, outbox.c.delay_seconds == 0)
    )
    return int((await conn.execute(query)).scalar_one())
