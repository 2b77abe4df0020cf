"""recurring jobs, batches, leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 08:31:17.626174
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import orchestrator.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("ended", sa.Integer(), server_default="0", nullable=False),
        sa.Column("continuation_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.Column("completed_at", orchestrator.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "recurring_jobs",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
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
        sa.Column("cron", sa.String(length=120), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=63), nullable=True),
        sa.Column(
            "options",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("misfire", sa.String(length=16), nullable=False),
        sa.Column("overlap", sa.String(length=16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", orchestrator.db.UTCDateTime(), nullable=True),
        sa.Column("last_run_at", orchestrator.db.UTCDateTime(), nullable=True),
        sa.Column("last_job_id", sa.Uuid(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("recurring_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_recurring_jobs_next_run",
            ["next_run_at"],
            unique=False,
            postgresql_where=sa.text("paused = false"),
            sqlite_where=sa.text("paused = 0"),
        )

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("first_ended_at", orchestrator.db.UTCDateTime(), nullable=True)
        )
        batch_op.create_index(
            "ux_jobs_recurring_occurrence",
            ["scheduled_for", "recurring_id"],
            unique=True,
            postgresql_where=sa.text("scheduled_for IS NOT NULL"),
            sqlite_where=sa.text("scheduled_for IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_jobs_recurring_occurrence",
            postgresql_where=sa.text("scheduled_for IS NOT NULL"),
            sqlite_where=sa.text("scheduled_for IS NOT NULL"),
        )
        batch_op.drop_column("first_ended_at")

    with op.batch_alter_table("recurring_jobs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_recurring_jobs_next_run",
            postgresql_where=sa.text("paused = false"),
            sqlite_where=sa.text("paused = 0"),
        )

    op.drop_table("recurring_jobs")
    op.drop_table("leases")
    op.drop_table("batches")
