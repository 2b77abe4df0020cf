"""The outbox's rows: publications committed with the change that needs them, deleted once the
broker confirmed them. Publishing and the relay's rules live in :mod:`orchestrator.outbox` (which
re-exports :class:`Pending`, :class:`Publication` and :func:`add`: every writer of a job adds its
publications through it)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator.broker import JobMessage
from orchestrator.db import fetch_autocommit
from orchestrator.store.tables import Row, outbox


@dataclass(frozen=True)
class Pending:
    """A committed outbox entry and the message it stands for."""

    entry_id: int
    message: JobMessage


@dataclass(frozen=True)
class Publication:
    job_id: uuid.UUID
    queue: str
    headers: Mapping[str, Any] = field(default_factory=dict)
    #: Whole seconds the message waits in the broker's delay levels (retries); 0: none.
    delay_seconds: int = 0


async def add(
    conn: AsyncConnection, publications: Sequence[Publication], now: datetime
) -> list[Pending]:
    """Record publications inside the caller's transaction; returns them for the fast path."""
    if not publications:
        return []
    rows = [
        {
            "job_id": p.job_id,
            "queue": p.queue,
            "delay_seconds": p.delay_seconds,
            "headers": dict(p.headers),
            "created_at": now,
            "attempts": 0,
        }
        for p in publications
    ]
    result = await conn.execute(
        sa.insert(outbox).returning(outbox.c.id, sort_by_parameter_order=True), rows
    )
    ids = [row.id for row in result.all()]
    return [
        Pending(
            entry_id,
            JobMessage(p.job_id, p.queue, p.headers, now.timestamp(), p.delay_seconds),
        )
        for entry_id, p in zip(ids, publications, strict=True)
    ]


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
