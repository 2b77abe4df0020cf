"""Typed handles of the store's tables, defined once (SQLModel sets ``__table__`` at class
creation; its stubs don't say so, hence the one ``type: ignore`` per table here)."""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import sqlalchemy as sa

from orchestrator import models

jobs: Final[sa.Table] = models.Job.__table__  # type: ignore[attr-defined]
history: Final[sa.Table] = models.JobHistory.__table__  # type: ignore[attr-defined]
outbox: Final[sa.Table] = models.OutboxEntry.__table__  # type: ignore[attr-defined]
counters: Final[sa.Table] = models.StateCounter.__table__  # type: ignore[attr-defined]
servers: Final[sa.Table] = models.Server.__table__  # type: ignore[attr-defined]
registrations: Final[sa.Table] = models.JobRegistration.__table__  # type: ignore[attr-defined]
recurring: Final[sa.Table] = models.RecurringJob.__table__  # type: ignore[attr-defined]
batches: Final[sa.Table] = models.Batch.__table__  # type: ignore[attr-defined]
dead_letters: Final[sa.Table] = models.DeadLetter.__table__  # type: ignore[attr-defined]
leases: Final[sa.Table] = models.Lease.__table__  # type: ignore[attr-defined]
sessions: Final[sa.Table] = models.DashboardSession.__table__  # type: ignore[attr-defined]

#: A result row of any shape (``sa.Row[Any]`` would be a row of one column).
Row: TypeAlias = sa.Row[*tuple[Any, ...]]

#: Every column of a job but its result: lists never carry results.
JOB_LIST_COLUMNS: Final = tuple(c for c in jobs.c if c.name != "result")
