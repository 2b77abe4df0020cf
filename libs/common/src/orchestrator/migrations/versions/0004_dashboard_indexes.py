"""dashboard: outcomes per second, text search in arguments

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OUTCOMES = sa.text("state IN ('Succeeded', 'Failed')")
#: Must stay word for word orchestrator.job_search.ARGUMENTS_TEXT (the planner matches the text).
_ARGUMENTS_TEXT = "(CAST(args AS TEXT) || ' ' || CAST(kwargs AS TEXT))"


def upgrade() -> None:
    # The realtime graph counts history rows entering Succeeded/Failed in the last seconds.
    with op.batch_alter_table("job_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_job_history_outcome_at",
            ["at"],
            unique=False,
            postgresql_where=_OUTCOMES,
            sqlite_where=_OUTCOMES,
        )
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return  # SQLite searches arguments with LIKE over the rows the other filters leave.
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    ).first()
    if available is None:
        return  # without pg_trgm, text search still works, by scanning
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        "CREATE INDEX ix_jobs_arguments_trgm ON jobs "
        f"USING gin ({_ARGUMENTS_TEXT} gin_trgm_ops)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_jobs_arguments_trgm")
    with op.batch_alter_table("job_history", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_job_history_outcome_at",
            postgresql_where=_OUTCOMES,
            sqlite_where=_OUTCOMES,
        )
