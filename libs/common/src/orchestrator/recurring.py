"""Recurring job definitions in the store (Hangfire's ``AddOrUpdate`` by id) and their runs.

The API saves, reads, pauses and triggers definitions; the scheduler fires the due ones. Each run
is an ordinary job carrying ``recurring_id`` and ``scheduled_for`` (the occurrence it stands for);
the unique index on those two columns makes an occurrence produce one job at most.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import outcomes, store
from orchestrator.catalog import Registration
from orchestrator.errors import JobNotFoundError
from orchestrator.jobs import DEFAULT_RETRIES
from orchestrator.schedule import parse
from orchestrator.store import recurring as store_recurring
from orchestrator.store.tables import Row

Misfire = Literal["relaxed", "strict", "ignore"]
Overlap = Literal["allow", "skip"]


class RecurringNotFoundError(JobNotFoundError):
    """No recurring job with that id (HTTP 404)."""

    def __init__(self, recurring_id: str) -> None:
        super().__init__(f"no recurring job with id {recurring_id!r}")


@dataclass(frozen=True)
class Definition:
    """What a recurring job runs and when; validated by the caller against the catalog."""

    id: str
    job: str
    cron: str
    timezone: str = "UTC"
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    misfire: Misfire = "relaxed"
    overlap: Overlap = "allow"
    options: dict[str, Any] = field(default_factory=dict)  #: retries, timeout_seconds

    def values(self) -> dict[str, Any]:
        return {
            "name": self.job,
            "args": self.args,
            "kwargs": self.kwargs,
            "cron": self.cron,
            "timezone": self.timezone,
            "queue": self.queue,
            "options": self.options,
            "misfire": self.misfire,
            "overlap": self.overlap,
        }


async def get(conn: AsyncConnection, recurring_id: str, *, lock: bool = False) -> Row:
    row = await store_recurring.get(conn, recurring_id, lock=lock)
    if row is None:
        raise RecurringNotFoundError(recurring_id)
    return row


async def save(conn: AsyncConnection, definition: Definition, now: datetime) -> bool:
    """Create or update by id; True when created. The next run moves only if the schedule did."""
    existing = await store_recurring.schedule_of(conn, definition.id)
    values = {**definition.values(), "updated_at": now, "error": None}
    schedule_changed = existing is None or (existing.cron, existing.timezone) != (
        definition.cron,
        definition.timezone,
    )
    if existing is None or schedule_changed or existing.next_run_at is None:
        values["next_run_at"] = parse(definition.cron, definition.timezone).next_after(now)
    if existing is not None:
        await store_recurring.update(conn, definition.id, values)
        return False
    await store_recurring.create(conn, definition.id, values, now)
    return True


async def remove(conn: AsyncConnection, recurring_id: str) -> None:
    if not await store_recurring.delete(conn, recurring_id):
        raise RecurringNotFoundError(recurring_id)


async def set_paused(conn: AsyncConnection, recurring_id: str, paused: bool, now: datetime) -> None:
    """Pause, or resume counting from ``now``: what was missed while paused never runs."""
    row = await get(conn, recurring_id, lock=True)
    values: dict[str, Any] = {"paused": paused, "updated_at": now}
    if not paused and row.paused:
        values["next_run_at"] = parse(row.cron, row.timezone).next_after(now)
    await store_recurring.update(conn, recurring_id, values)


async def read(conn: AsyncConnection, recurring_id: str) -> dict[str, Any]:
    row = await store_recurring.with_last_state(conn, recurring_id)
    if row is None:
        raise RecurringNotFoundError(recurring_id)
    return public(row)


async def read_all(conn: AsyncConnection) -> list[dict[str, Any]]:
    return [public(row) for row in await store_recurring.all_with_last_state(conn)]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def public(row: Row) -> dict[str, Any]:
    """The definition as the HTTP API shows it (stored values made showable, as for jobs)."""
    args, kwargs = outcomes.showable_arguments(row.args, row.kwargs)
    return {
        "id": row.id,
        "job": row.name,
        "args": args,
        "kwargs": kwargs,
        "cron": row.cron,
        "timezone": row.timezone,
        "queue": row.queue,
        "misfire": row.misfire,
        "overlap": row.overlap,
        "retries": row.options.get("retries"),
        "timeout_seconds": row.options.get("timeout_seconds"),
        "next_run_at": None if row.paused else _iso(row.next_run_at),
        "last_run_at": _iso(row.last_run_at),
        "last_job_id": str(row.last_job_id) if row.last_job_id else None,
        "last_job_state": getattr(row, "last_job_state", None),
        "paused": row.paused,
        "error": outcomes.showable(row.error),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def new_run(
    row: Row, registration: Registration, scheduled_for: datetime, reason: str
) -> store.NewJob:
    """One run of a definition: an ordinary Enqueued job that records its occurrence."""
    options = row.options
    retries = options.get("retries")
    if retries is None:
        retries = int(registration.options.get("retries", DEFAULT_RETRIES))
    timeout = options.get("timeout_seconds")
    if timeout is None and registration.options.get("timeout") is not None:
        timeout = float(registration.options["timeout"])
    return store.NewJob(
        name=row.name,
        queue=row.queue or registration.queue,
        args=list(row.args),
        kwargs=dict(row.kwargs),
        retries=int(retries),
        timeout_seconds=timeout,
        recurring_id=row.id,
        scheduled_for=scheduled_for,
        reason=reason,
    )


async def record_runs(
    conn: AsyncConnection, recurring_id: str, runs: Sequence[store.NewJob], now: datetime
) -> None:
    """Remember the newest run of a definition (for ``last_job_id`` and the overlap check)."""
    if not runs:
        return
    await store_recurring.record_run(conn, recurring_id, runs[-1].id, now)


async def job_states(conn: AsyncConnection, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not job_ids:
        return {}
    return await store_recurring.job_states(conn, job_ids)
