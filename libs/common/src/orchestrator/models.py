"""Tables of the state store (SQLModel); the schema itself is owned by the Alembic migrations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from orchestrator.db import BigIdType, JsonType, UTCDateTime


def _col(type_: Any, *, nullable: bool = True, **column_options: Any) -> Any:
    return Field(sa_column=sa.Column(type_, nullable=nullable, **column_options))


def _partial_index(name: str, *columns: str, unique: bool = False) -> sa.Index:
    """An index over the rows where the first column is set."""
    where = sa.text(f"{columns[0]} IS NOT NULL")
    return sa.Index(name, *columns, unique=unique, postgresql_where=where, sqlite_where=where)


class Job(SQLModel, table=True):
    """One background job: what to run, its current state and everything needed to run it."""

    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_state_created", "state", "created_at", "id"),
        sa.Index("ix_jobs_queue_state_created", "queue", "state", "created_at", "id"),
        sa.Index("ix_jobs_name_state_created", "name", "state", "created_at", "id"),
        sa.Index("ix_jobs_created", "created_at", "id"),
        sa.Index(
            "ix_jobs_scheduled_due",
            "due_at",
            postgresql_where=sa.text("state = 'Scheduled'"),
            sqlite_where=sa.text("state = 'Scheduled'"),
        ),
        # The reconciliation's candidates: Enqueued the longest, per queue.
        sa.Index(
            "ix_jobs_enqueued_since",
            "queue",
            "state_changed_at",
            "id",
            postgresql_where=sa.text("state = 'Enqueued'"),
            sqlite_where=sa.text("state = 'Enqueued'"),
        ),
        sa.Index(
            "ix_jobs_processing_lease",
            "lease_until",
            postgresql_where=sa.text("state = 'Processing'"),
            sqlite_where=sa.text("state = 'Processing'"),
        ),
        # Most jobs have no expiry yet, no parent, batch, recurring id or idempotency key:
        # partial indexes keep those rows out, so each state change writes fewer index entries.
        _partial_index("ix_jobs_expires", "expires_at"),
        _partial_index("ix_jobs_parent", "parent_id"),
        _partial_index("ix_jobs_batch", "batch_id"),
        _partial_index("ix_jobs_recurring", "recurring_id", "created_at"),
        _partial_index("ux_jobs_idempotency_key", "idempotency_key", unique=True),
        # A recurring occurrence produces exactly one job, whichever scheduler fires it.
        _partial_index(
            "ux_jobs_recurring_occurrence", "scheduled_for", "recurring_id", unique=True
        ),
    )

    id: uuid.UUID = Field(sa_column=sa.Column(sa.Uuid(), primary_key=True))
    name: str = _col(sa.String(200), nullable=False)
    queue: str = _col(sa.String(63), nullable=False)
    args: list[Any] = _col(JsonType, nullable=False)
    # Named apart from its column: a field called ``kwargs`` clashes with the generated __init__.
    keyword_args: dict[str, Any] = Field(sa_column=sa.Column("kwargs", JsonType, nullable=False))
    state: str = _col(sa.String(16), nullable=False)
    #: Why a Scheduled job waits: "delay" (asked for) or "retry" (after a failure).
    scheduled_reason: str | None = _col(sa.String(16))
    due_at: datetime | None = _col(UTCDateTime())
    #: Executions so far, counted from 1; crash re-runs count too.
    attempt: int = _col(sa.Integer, nullable=False, server_default="0")
    #: How many re-runs after the first failure are allowed, and how many were spent.
    retries: int = _col(sa.Integer, nullable=False, server_default="0")
    retries_used: int = _col(sa.Integer, nullable=False, server_default="0")
    timeout_seconds: float | None = _col(sa.Float)
    lease_until: datetime | None = _col(UTCDateTime())
    worker_id: str | None = _col(sa.String(200))
    #: Runs whose worker stopped renewing the lease (crashed); the scheduler fails the job
    #: ("worker lost") once this reaches the configured limit.
    lost_count: int = _col(sa.Integer, nullable=False, server_default="0")
    result: Any = _col(JsonType)
    error_type: str | None = _col(sa.String(300))
    error_message: str | None = _col(sa.Text)
    error_traceback: str | None = _col(sa.Text)
    created_at: datetime = _col(UTCDateTime(), nullable=False)
    state_changed_at: datetime = _col(UTCDateTime(), nullable=False)
    started_at: datetime | None = _col(UTCDateTime())
    finished_at: datetime | None = _col(UTCDateTime())
    expires_at: datetime | None = _col(UTCDateTime())
    #: When the job first ended (final, or Failed with no retry left); set once, for batches.
    first_ended_at: datetime | None = _col(UTCDateTime())
    expire_after_seconds: float | None = _col(sa.Float)
    idempotency_key: str | None = _col(sa.String(200))
    request_hash: str | None = _col(sa.String(64))
    parent_id: uuid.UUID | None = _col(sa.Uuid())
    continue_on: str | None = _col(sa.String(16))
    batch_id: uuid.UUID | None = _col(sa.Uuid())
    recurring_id: str | None = _col(sa.String(200))
    scheduled_for: datetime | None = _col(UTCDateTime())
    #: W3C trace context of the request that created the job, carried to every message.
    trace_context: dict[str, str] | None = _col(JsonType)
    options: dict[str, Any] = _col(JsonType, nullable=False)


class JobHistory(SQLModel, table=True):
    """One row per state a job entered, oldest first by id."""

    __tablename__ = "job_history"
    __table_args__ = (
        sa.Index("ix_job_history_job", "job_id", "id"),
        # The dashboard's realtime graph: outcomes per second over the last minute.
        sa.Index(
            "ix_job_history_outcome_at",
            "at",
            postgresql_where=sa.text("state IN ('Succeeded', 'Failed')"),
            sqlite_where=sa.text("state IN ('Succeeded', 'Failed')"),
        ),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BigIdType, primary_key=True, autoincrement=True)
    )
    job_id: uuid.UUID = _col(sa.Uuid(), nullable=False)
    state: str = _col(sa.String(16), nullable=False)
    at: datetime = _col(UTCDateTime(), nullable=False)
    reason: str | None = _col(sa.Text)
    data: dict[str, Any] | None = _col(JsonType)


class OutboxEntry(SQLModel, table=True):
    """A publication committed with the state change that needs it; deleted once confirmed."""

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_created", "created_at", "id"),)

    id: int | None = Field(
        default=None, sa_column=sa.Column(BigIdType, primary_key=True, autoincrement=True)
    )
    job_id: uuid.UUID = _col(sa.Uuid(), nullable=False)
    queue: str = _col(sa.String(63), nullable=False)
    #: Seconds the message must wait in the broker's delay levels before it reaches the queue.
    delay_seconds: int = _col(sa.Integer, nullable=False, server_default="0")
    headers: dict[str, Any] = _col(JsonType, nullable=False)
    created_at: datetime = _col(UTCDateTime(), nullable=False)
    attempts: int = _col(sa.Integer, nullable=False, server_default="0")
    last_error: str | None = _col(sa.Text)


class StateCounter(SQLModel, table=True):
    """Jobs that entered a state, per hour; outlives job expiry for the dashboard's history.

    Append-only: every transaction that counts adds a row, and readers sum by (hour, state).
    Updating one row per hour in place would make every worker round wait on, and walk the dead
    versions of, the same hot row (measured: 100+ ms stalls). The janitor folds past hours into
    one row each.
    """

    __tablename__ = "state_counters"
    __table_args__ = (sa.Index("ix_state_counters_hour_state", "hour", "state"),)

    id: int | None = Field(
        default=None, sa_column=sa.Column(BigIdType, primary_key=True, autoincrement=True)
    )
    hour: datetime = _col(UTCDateTime(), nullable=False)
    state: str = _col(sa.String(16), nullable=False)
    count: int = _col(sa.BigInteger, nullable=False)


class Server(SQLModel, table=True):
    """A running service instance and its latest heartbeat."""

    __tablename__ = "servers"

    id: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    role: str = _col(sa.String(20), nullable=False)
    host: str = _col(sa.String(200), nullable=False)
    pid: int = _col(sa.Integer, nullable=False)
    queues: list[str] = _col(JsonType, nullable=False)
    concurrency: int = _col(sa.Integer, nullable=False, server_default="0")
    started_at: datetime = _col(UTCDateTime(), nullable=False)
    heartbeat_at: datetime = _col(UTCDateTime(), nullable=False)


class JobRegistration(SQLModel, table=True):
    """A job a worker can run, with the JSON Schema of its parameters."""

    __tablename__ = "job_registrations"

    name: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    schema_hash: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    queue: str = _col(sa.String(63), nullable=False)
    parameters: list[str] = _col(JsonType, nullable=False)
    json_schema: dict[str, Any] = _col(JsonType, nullable=False)
    options: dict[str, Any] = _col(JsonType, nullable=False)
    registered_at: datetime = _col(UTCDateTime(), nullable=False)


class RecurringJob(SQLModel, table=True):
    """A recurring job (Hangfire's ``AddOrUpdate`` by id): what to run and when it runs next."""

    __tablename__ = "recurring_jobs"
    __table_args__ = (
        sa.Index(
            "ix_recurring_jobs_next_run",
            "next_run_at",
            postgresql_where=sa.text("paused = false"),
            sqlite_where=sa.text("paused = 0"),
        ),
    )

    id: str = Field(sa_column=sa.Column(sa.String(200), primary_key=True))
    name: str = _col(sa.String(200), nullable=False)
    args: list[Any] = _col(JsonType, nullable=False)
    keyword_args: dict[str, Any] = Field(sa_column=sa.Column("kwargs", JsonType, nullable=False))
    cron: str = _col(sa.String(120), nullable=False)
    timezone: str = _col(sa.String(64), nullable=False)
    queue: str | None = _col(sa.String(63))
    #: Enqueue options for every run (retries, timeout_seconds, expire_after_seconds).
    options: dict[str, Any] = _col(JsonType, nullable=False)
    #: "relaxed" (one run now), "strict" (one per missed occurrence) or "ignore".
    misfire: str = _col(sa.String(16), nullable=False)
    #: "allow" or "skip" (no new run while the previous one has not ended).
    overlap: str = _col(sa.String(16), nullable=False)
    paused: bool = _col(sa.Boolean, nullable=False)
    next_run_at: datetime | None = _col(UTCDateTime())
    last_run_at: datetime | None = _col(UTCDateTime())
    last_job_id: uuid.UUID | None = _col(sa.Uuid())
    error: str | None = _col(sa.Text)
    created_at: datetime = _col(UTCDateTime(), nullable=False)
    updated_at: datetime = _col(UTCDateTime(), nullable=False)


class Batch(SQLModel, table=True):
    """Jobs created together; the continuation runs once every member has ended once."""

    __tablename__ = "batches"
    __table_args__ = (_partial_index("ix_batches_completed", "completed_at"),)

    id: uuid.UUID = Field(sa_column=sa.Column(sa.Uuid(), primary_key=True))
    total: int = _col(sa.Integer, nullable=False)
    #: Members that have ended at least once (a later requeue does not count again).
    ended: int = _col(sa.Integer, nullable=False, server_default="0")
    continuation_id: uuid.UUID | None = _col(sa.Uuid())
    created_at: datetime = _col(UTCDateTime(), nullable=False)
    completed_at: datetime | None = _col(UTCDateTime())


class DeadLetter(SQLModel, table=True):
    """A message RabbitMQ dead-lettered, drained from ``<ns>.dead`` by the janitor."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        sa.Index("ix_dead_letters_first_seen", "first_seen_at"),
        sa.Index("ux_dead_letters_fingerprint", "fingerprint", unique=True),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BigIdType, primary_key=True, autoincrement=True)
    )
    #: Hash of the message id, its x-death entries and its body: a redelivered copy of the same
    #: dead letter (the janitor stopped before its ack) is recorded once.
    fingerprint: str = _col(sa.String(64), nullable=False)
    message_id: str | None = _col(sa.String(200))
    job_id: uuid.UUID | None = _col(sa.Uuid())
    #: The job queue it was dead-lettered from (None: not one of the work queues).
    queue: str | None = _col(sa.String(63))
    source_queue: str | None = _col(sa.String(300))
    #: RabbitMQ's x-death reason: rejected, delivery_limit, expired or maxlen.
    reason: str = _col(sa.String(40), nullable=False)
    #: In words, as recorded in the job's history ("Dead-lettered: <why>").
    why: str = _col(sa.Text, nullable=False)
    death_count: int = _col(sa.Integer, nullable=False)
    #: The body, cut at a bound; ``body_size`` is the original length.
    body: bytes = _col(sa.LargeBinary, nullable=False)
    body_size: int = _col(sa.Integer, nullable=False)
    headers: dict[str, Any] = _col(JsonType, nullable=False)
    first_seen_at: datetime = _col(UTCDateTime(), nullable=False)


class Lease(SQLModel, table=True):
    """A named, time-limited role held by one instance (the active scheduler)."""

    __tablename__ = "leases"

    name: str = Field(sa_column=sa.Column(sa.String(100), primary_key=True))
    holder: str = _col(sa.String(200), nullable=False)
    expires_at: datetime = _col(UTCDateTime(), nullable=False)


class DashboardSession(SQLModel, table=True):
    """A dashboard sign-in. Kept by the hash of its cookie (reading the store yields no usable
    cookie) with a proof of the key it was made with (removing the key ends it); signing out
    deletes the row, which ends the session on every API replica at once."""

    __tablename__ = "dashboard_sessions"
    __table_args__ = (sa.Index("ix_dashboard_sessions_expires", "expires_at"),)

    id: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    key_proof: str = _col(sa.String(64), nullable=False)
    created_at: datetime = _col(UTCDateTime(), nullable=False)
    expires_at: datetime = _col(UTCDateTime(), nullable=False)


metadata = SQLModel.metadata
