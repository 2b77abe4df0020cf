"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-28 08:23:13.775004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import orchestrator.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("job_history", schema=None) as batch_op:
        batch_op.create_index("ix_job_history_job", ["job_id", "id"], unique=False)

    op.create_table(
        "job_registrations",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("schema_hash", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=63), nullable=False),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "json_schema",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "options",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("registered_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", "schema_hash"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=63), nullable=False),
        sa.Column(
            "args",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "kwargs",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("scheduled_reason", sa.String(length=16), nullable=True),
        sa.Column("due_at", orchestrator.db.UTCDateTime(), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retries_used", sa.Integer(), server_default="0", nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=True),
        sa.Column("lease_until", orchestrator.db.UTCDateTime(), nullable=True),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("error_type", sa.String(length=300), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_traceback", sa.Text(), nullable=True),
        sa.Column("created_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.Column("state_changed_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.Column("started_at", orchestrator.db.UTCDateTime(), nullable=True),
        sa.Column("finished_at", orchestrator.db.UTCDateTime(), nullable=True),
        sa.Column("expires_at", orchestrator.db.UTCDateTime(), nullable=True),
        sa.Column("expire_after_seconds", sa.Float(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("continue_on", sa.String(length=16), nullable=True),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        sa.Column("recurring_id", sa.String(length=200), nullable=True),
        sa.Column("scheduled_for", orchestrator.db.UTCDateTime(), nullable=True),
        sa.Column(
            "trace_context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "options",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_batch",
            ["batch_id"],
            unique=False,
            postgresql_where=sa.text("batch_id IS NOT NULL"),
            sqlite_where=sa.text("batch_id IS NOT NULL"),
        )
        batch_op.create_index("ix_jobs_created", ["created_at", "id"], unique=False)
        batch_op.create_index(
            "ix_jobs_expires",
            ["expires_at"],
            unique=False,
            postgresql_where=sa.text("expires_at IS NOT NULL"),
            sqlite_where=sa.text("expires_at IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_jobs_name_state_created", ["name", "state", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_jobs_parent",
            ["parent_id"],
            unique=False,
            postgresql_where=sa.text("parent_id IS NOT NULL"),
            sqlite_where=sa.text("parent_id IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_jobs_processing_lease",
            ["lease_until"],
            unique=False,
            postgresql_where=sa.text("state = 'Processing'"),
            sqlite_where=sa.text("state = 'Processing'"),
        )
        batch_op.create_index(
            "ix_jobs_queue_state_created", ["queue", "state", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_jobs_recurring",
            ["recurring_id", "created_at"],
            unique=False,
            postgresql_where=sa.text("recurring_id IS NOT NULL"),
            sqlite_where=sa.text("recurring_id IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_jobs_scheduled_due",
            ["due_at"],
            unique=False,
            postgresql_where=sa.text("state = 'Scheduled'"),
            sqlite_where=sa.text("state = 'Scheduled'"),
        )
        batch_op.create_index("ix_jobs_state_created", ["state", "created_at", "id"], unique=False)
        batch_op.create_index(
            "ux_jobs_idempotency_key",
            ["idempotency_key"],
            unique=True,
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
            sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        )

    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("queue", sa.String(length=63), nullable=False),
        sa.Column("delay_seconds", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "headers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_created", ["created_at", "id"], unique=False)

    op.create_table(
        "servers",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column(
            "queues",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("concurrency", sa.Integer(), server_default="0", nullable=False),
        sa.Column("started_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "state_counters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("hour", orchestrator.db.UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("state_counters", schema=None) as batch_op:
        batch_op.create_index("ix_state_counters_hour_state", ["hour", "state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("state_counters", schema=None) as batch_op:
        batch_op.drop_index("ix_state_counters_hour_state")

    op.drop_table("state_counters")
    op.drop_table("servers")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_created")

    op.drop_table("outbox")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_jobs_idempotency_key",
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
            sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        )
        batch_op.drop_index("ix_jobs_state_created")
        batch_op.drop_index(
            "ix_jobs_scheduled_due",
            postgresql_where=sa.text("state = 'Scheduled'"),
            sqlite_where=sa.text("state = 'Scheduled'"),
        )
        batch_op.drop_index(
            "ix_jobs_recurring",
            postgresql_where=sa.text("recurring_id IS NOT NULL"),
            sqlite_where=sa.text("recurring_id IS NOT NULL"),
        )
        batch_op.drop_index("ix_jobs_queue_state_created")
        batch_op.drop_index(
            "ix_jobs_processing_lease",
            postgresql_where=sa.text("state = 'Processing'"),
            sqlite_where=sa.text("state = 'Processing'"),
        )
        batch_op.drop_index(
            "ix_jobs_parent",
            postgresql_where=sa.text("parent_id IS NOT NULL"),
            sqlite_where=sa.text("parent_id IS NOT NULL"),
        )
        batch_op.drop_index("ix_jobs_name_state_created")
        batch_op.drop_index(
            "ix_jobs_expires",
            postgresql_where=sa.text("expires_at IS NOT NULL"),
            sqlite_where=sa.text("expires_at IS NOT NULL"),
        )
        batch_op.drop_index("ix_jobs_created")
        batch_op.drop_index(
            "ix_jobs_batch",
            postgresql_where=sa.text("batch_id IS NOT NULL"),
            sqlite_where=sa.text("batch_id IS NOT NULL"),
        )

    op.drop_table("jobs")
    op.drop_table("job_registrations")
    with op.batch_alter_table("job_history", schema=None) as batch_op:
        batch_op.drop_index("ix_job_history_job")

    op.drop_table("job_history")
