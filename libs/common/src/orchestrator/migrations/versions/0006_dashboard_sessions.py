"""dashboard sessions kept in the store, so signing out ends them on every replica

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("key_proof", sa.String(length=64), nullable=False),
        sa.Column("created_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", orchestrator.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dashboard_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_dashboard_sessions_expires", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dashboard_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_dashboard_sessions_expires")
    op.drop_table("dashboard_sessions")
