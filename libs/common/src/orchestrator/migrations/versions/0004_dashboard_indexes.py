"""dashboard: outcomes per second

The trigram index for text search in arguments is not created here: it makes every insert and
state change of a job cost more (docs/dashboard.md has the figures), so it is an operator's choice,
one statement given in docs/dashboard.md.

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


def downgrade() -> None:
    with op.batch_alter_table("job_history", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_job_history_outcome_at",
            postgresql_where=_OUTCOMES,
            sqlite_where=_OUTCOMES,
        )
