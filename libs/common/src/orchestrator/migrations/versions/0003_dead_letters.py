"""dead letters, worker losses per job

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import orchestrator.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("queue", sa.String(length=63), nullable=True),
        sa.Column("source_queue", sa.String(length=300), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("death_count", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_size", sa.Integer(), nullable=False),
        sa.Column("headers", _json, nullable=False),
        sa.Column("first_seen_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index("ix_dead_letters_first_seen", ["first_seen_at"], unique=False)
        batch_op.create_index("ux_dead_letters_fingerprint", ["fingerprint"], unique=True)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lost_count", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.create_index(
            "ix_batches_completed",
            ["completed_at"],
            unique=False,
            postgresql_where=sa.text("completed_at IS NOT NULL"),
            sqlite_where=sa.text("completed_at IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_batches_completed",
            postgresql_where=sa.text("completed_at IS NOT NULL"),
            sqlite_where=sa.text("completed_at IS NOT NULL"),
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("lost_count")
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index("ux_dead_letters_fingerprint")
        batch_op.drop_index("ix_dead_letters_first_seen")
    op.drop_table("dead_letters")
