"""Creating and reading jobs. State changes go through ``orchestrator.transitions``."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator.bounds import check_instant
from orchestrator.broker import JobMessage
from orchestrator.db import db_now, fetch_autocommit, is_postgres
from orchestrator.errors import JobNotFoundError
from orchestrator.lifecycle import State
from orchestrator.store import outbox
from orchestrator.store.tables import JOB_LIST_COLUMNS as LIST_COLUMNS
from orchestrator.store.tables import Row
from orchestrator.store.tables import history as history_table
from orchestrator.store.tables import jobs as jobs_table
from orchestrator.store.tables import servers as servers_table


@dataclass
class NewJob:
    """Everything needed to insert one job; ``state`` is Enqueued, Scheduled or Awaiting."""

    name: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    state: State = State.ENQUEUED
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    retries: int = 10
    due_at: datetime | None = None
    scheduled_reason: str | None = None
    timeout_seconds: float | None = None
    expire_after_seconds: float | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    parent_id: uuid.UUID | None = None
    continue_on: str | None = None
    batch_id: uuid.UUID | None = None
    recurring_id: str | None = None
    scheduled_for: datetime | None = None
    trace_context: dict[str, str] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    reason: str = "Created"
    #: What the request asked for, turned into ``due_at`` by :func:`resolve_timing` (or by the
    #: database, in :func:`create_plain_jobs`).
    requested_delay: float | None = None
    requested_run_at: datetime | None = None

    def row(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "queue": self.queue,
            "args": self.args,
            "kwargs": self.kwargs,
            "state": self.state.value,
            "scheduled_reason": self.scheduled_reason,
            "due_at": self.due_at,
            "attempt": 0,
            "retries": self.retries,
            "retries_used": 0,
            "timeout_seconds": self.timeout_seconds,
            "created_at": now,
            "state_changed_at": now,
            "expire_after_seconds": self.expire_after_seconds,
            "idempotency_key": self.idempotency_key,
            "request_hash": self.request_hash,
            "parent_id": self.parent_id,
            "continue_on": self.continue_on,
            "batch_id": self.batch_id,
            "recurring_id": self.recurring_id,
            "scheduled_for": self.scheduled_for,
            "trace_context": self.trace_context,
            "options": self.options,
        }


async def create_jobs(
    conn: AsyncConnection, new_jobs: Sequence[NewJob], now: datetime
) -> list[outbox.Pending]:
    """Insert jobs, their first history rows and the outbox entries of the Enqueued ones."""
    if not new_jobs:
        return []
    rows = [job.row(now) for job in new_jobs]
    await conn.execute(sa.insert(jobs_table), rows)
    await conn.execute(
        sa.insert(history_table),
        [
            {"job_id": j.id, "state": j.state.value, "at": now, "reason": j.reason, "data": None}
            for j in new_jobs
        ],
    )
    publications = [
        outbox.Publication(j.id, j.queue, j.trace_context or {})
        for j in new_jobs
        if j.state is State.ENQUEUED
    ]
    return await outbox.add(conn, publications, now)


def resolve_timing(job: NewJob, now: datetime) -> None:
    """Scheduled with a due time if the request asked for a future one; else it stays Enqueued."""
    due_at = None
    if job.requested_delay is not None and job.requested_delay > 0:
        due_at = now + timedelta(seconds=job.requested_delay)
    elif job.requested_run_at is not None and job.requested_run_at > now:
        due_at = job.requested_run_at
    if due_at is not None:
        _scheduled(job, due_at)


def _scheduled(job: NewJob, due_at: datetime) -> None:
    job.state = State.SCHEDULED
    job.due_at = due_at
    job.scheduled_reason = "delay"
    job.reason = f"Delayed until {due_at.isoformat()}"


# One statement, so one round trip in autocommit: the jobs, their first history rows and the
# outbox entries of the Enqueued ones, stamped and timed by the database's clock. The same text
# for any number of jobs (arrays, not a VALUES list), so asyncpg prepares it once per connection.
_CREATE_PLAIN = """
WITH clock AS (SELECT clock_timestamp() AS now),
given AS (
    SELECT g.*, clock.now,
           CASE WHEN g.delay > 0 THEN clock.now + g.delay * interval '1 second'
                WHEN g.run_at > clock.now THEN g.run_at END AS due_at
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                $7::float8[], $8::float8[], $9::text[], $10::text[], $11::float8[],
                $12::timestamptz[])
         AS g(id, name, queue, args, kwargs, retries, timeout_seconds, expire_after_seconds,
              trace_context, options, delay, run_at)
    CROSS JOIN clock
),
job AS (
    INSERT INTO jobs (id, name, queue, args, kwargs, state, scheduled_reason, due_at, attempt,
                      retries, retries_used, lost_count, timeout_seconds, created_at,
                      state_changed_at, expire_after_seconds, trace_context, options)
    SELECT id, name, queue, args::jsonb, kwargs::jsonb,
           CASE WHEN due_at IS NULL THEN 'Enqueued' ELSE 'Scheduled' END,
           CASE WHEN due_at IS NULL THEN NULL ELSE 'delay' END,
           due_at, 0, retries, 0, 0, timeout_seconds, now, now, expire_after_seconds,
           trace_context::jsonb, options::jsonb
    FROM given
    RETURNING id, queue, due_at, created_at, trace_context
),
history AS (
    INSERT INTO job_history (job_id, state, at, reason)
    SELECT id, CASE WHEN due_at IS NULL THEN 'Enqueued' ELSE 'Scheduled' END, created_at,
           CASE WHEN due_at IS NULL THEN 'Created' ELSE 'Delayed until ' ||
                to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00' END
    FROM job
),
entry AS (
    INSERT INTO outbox (job_id, queue, delay_seconds, headers, created_at, attempts)
    SELECT id, queue, 0, coalesce(trace_context, '{}'::jsonb), created_at, 0
    FROM job WHERE due_at IS NULL
    RETURNING id, job_id
)
SELECT job.id, job.due_at, job.created_at, entry.id AS entry_id
FROM job LEFT JOIN entry ON entry.job_id = job.id
"""


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


async def create_plain_jobs(
    engine: AsyncEngine, new_jobs: Sequence[NewJob]
) -> list[outbox.Pending]:
    """Insert jobs with no idempotency key and no parent, each Enqueued or (delayed) Scheduled
    by the database's clock; commits, and sets each job's state and due time.

    On PostgreSQL this is one prepared statement sent in autocommit (one round trip for any
    number of jobs), on asyncpg directly; SQLite takes a few statements in one transaction.
    """
    if not new_jobs:
        return []
    if not is_postgres(engine):
        async with engine.begin() as conn:
            now = await db_now(conn)
            for job in new_jobs:
                resolve_timing(job, now)
            return await create_jobs(conn, new_jobs, now)
    columns = (
        [j.id for j in new_jobs],
        [j.name for j in new_jobs],
        [j.queue for j in new_jobs],
        [json.dumps(j.args) for j in new_jobs],
        [json.dumps(j.kwargs) for j in new_jobs],
        [j.retries for j in new_jobs],
        [j.timeout_seconds for j in new_jobs],
        [j.expire_after_seconds for j in new_jobs],
        [_json(j.trace_context) for j in new_jobs],
        [json.dumps(j.options) for j in new_jobs],
        [j.requested_delay for j in new_jobs],
        [j.requested_run_at for j in new_jobs],
    )
    rows = await fetch_autocommit(engine, _CREATE_PLAIN, *columns)
    by_id = {row["id"]: row for row in rows}
    pending = []
    for job in new_jobs:
        row = by_id[job.id]
        if row["due_at"] is not None:
            _scheduled(job, row["due_at"])
        else:
            message = JobMessage(
                job.id, job.queue, job.trace_context or {}, row["created_at"].timestamp()
            )
            pending.append(outbox.Pending(row["entry_id"], message))
    return pending


async def find_by_idempotency_keys(
    conn: AsyncConnection, keys: Sequence[str]
) -> dict[str, Row]:
    if not keys:
        return {}
    rows = await conn.execute(
        sa.select(
            jobs_table.c.id,
            jobs_table.c.state,
            jobs_table.c.idempotency_key,
            jobs_table.c.request_hash,
        ).where(jobs_table.c.idempotency_key.in_(list(keys)))
    )
    return {row.idempotency_key: row for row in rows}


async def get_job(conn: AsyncConnection, job_id: uuid.UUID) -> Row:
    row = (await conn.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id))).first()
    if row is None:
        raise JobNotFoundError(f"no job with id {job_id}")
    return row


async def get_history(conn: AsyncConnection, job_id: uuid.UUID) -> list[Row]:
    query = (
        sa.select(history_table)
        .where(history_table.c.job_id == job_id)
        .order_by(history_table.c.id)
    )
    return list((await conn.execute(query)).all())


@dataclass(frozen=True)
class JobFilter:
    state: State | None = None
    queue: str | None = None
    name: str | None = None


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, _, job_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None:
            raise ValueError("invalid cursor")
        return check_instant(created_at), uuid.UUID(job_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None


async def list_jobs(
    conn: AsyncConnection, where: JobFilter, *, limit: int, cursor: str | None
) -> tuple[list[Row], str | None]:
    """Newest first, keyset-paged on (created_at, id) so deep pages cost the same as the first."""
    query = sa.select(*LIST_COLUMNS)
    if where.state is not None:
        query = query.where(jobs_table.c.state == where.state.value)
    if where.queue is not None:
        query = query.where(jobs_table.c.queue == where.queue)
    if where.name is not None:
        query = query.where(jobs_table.c.name == where.name)
    if cursor is not None:
        created_at, job_id = decode_cursor(cursor)
        query = query.where(
            sa.tuple_(jobs_table.c.created_at, jobs_table.c.id) < sa.tuple_(created_at, job_id)
        )
    query = query.order_by(jobs_table.c.created_at.desc(), jobs_table.c.id.desc()).limit(limit + 1)
    rows = list((await conn.execute(query)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
    return rows, next_cursor


async def state_counts(conn: AsyncConnection) -> dict[str, int]:
    query = sa.select(jobs_table.c.state, sa.func.count()).group_by(jobs_table.c.state)
    counts = {state.value: 0 for state in State}
    for state, count in (await conn.execute(query)).all():
        counts[state] = count
    return counts


async def processing_by_queue(conn: AsyncConnection) -> dict[str, int]:
    query = (
        sa.select(jobs_table.c.queue, sa.func.count())
        .where(jobs_table.c.state == State.PROCESSING.value)
        .group_by(jobs_table.c.queue)
    )
    return {str(queue): int(count) for queue, count in (await conn.execute(query)).all()}


async def known_queues(conn: AsyncConnection) -> set[str]:
    """Queues that hold jobs or that a live server consumes."""
    queues = set((await conn.execute(sa.select(jobs_table.c.queue).distinct())).scalars())
    for server_queues in (await conn.execute(sa.select(servers_table.c.queues))).scalars():
        queues.update(server_queues)
    return queues


async def list_servers(conn: AsyncConnection) -> list[Row]:
    query = sa.select(servers_table).order_by(servers_table.c.role, servers_table.c.started_at)
    return list((await conn.execute(query)).all())
