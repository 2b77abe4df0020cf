"""The recurring loop: turns due recurring definitions into ordinary Enqueued jobs.

One transaction per batch takes the due definitions (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so several schedulers share them), creates each occurrence's job with its outbox entry and moves
``next_run_at`` on; the messages are published after commit (the relay sends what is left). The
unique index on ``(scheduled_for, recurring_id)`` stops a second job for the same occurrence
whatever happens, and a savepoint turns such a duplicate into "already fired".

The loop sleeps until the next due definition, at most :data:`MAX_SLEEP` seconds, because the
API may add an earlier one at any time; an idle tick is one indexed query.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import outbox, recurring, store
from orchestrator.broker import Publisher
from orchestrator.catalog import Registration, validate_with_schema
from orchestrator.db import db_now, is_postgres
from orchestrator.errors import JobValidationError
from orchestrator.lifecycle import State, has_ended
from orchestrator.loops import Loop
from orchestrator.metrics import JOBS_ENQUEUED, SCHEDULER_LATENESS
from orchestrator.schedule import Schedule, ScheduleError, parse
from orchestrator.store import recurring as store_recurring
from orchestrator.store import registrations as store_registrations
from orchestrator.store.tables import Row

log = logging.getLogger(__name__)

MAX_SLEEP = 1.0
BATCH = 200
#: ``misfire="strict"`` makes up at most this many missed occurrences.
STRICT_CAP = 100
#: An occurrence this late or less is on time, not missed (covers a scheduler failover).
GRACE = timedelta(seconds=15)

Clock = Callable[[AsyncConnection], Awaitable[datetime]]
PublisherSource = Callable[[], Awaitable[Publisher | None]]


def choose_runs(misfire: str, due: Sequence[datetime], now: datetime) -> list[datetime]:
    """Which due occurrences (oldest first, all <= now) get a run under a misfire policy."""
    on_time = [t for t in due if now - t <= GRACE]
    if misfire == "strict":
        return list(due[:STRICT_CAP])
    if misfire == "ignore" or on_time:
        return on_time
    return [due[-1]] if due else []  # relaxed: the missed ones become one run now


@dataclass
class Fired:
    """What one batch did: runs created, definitions handled, messages to publish."""

    runs: int = 0
    definitions: int = 0
    pending: list[outbox.Pending] | None = None


async def fire_due(conn: AsyncConnection, now: datetime, *, limit: int = BATCH) -> Fired:
    """Create the runs of every due definition (up to ``limit``) inside the caller's
    transaction and move each definition's ``next_run_at`` past ``now``."""
    rows = await store_recurring.due(conn, now, limit)
    fired = Fired(definitions=len(rows), pending=[])
    if not rows:
        return fired
    registrations = await store_registrations.newest(conn)
    previous = await recurring.job_states(
        conn, [r.last_job_id for r in rows if r.overlap == "skip" and r.last_job_id]
    )
    for row in rows:
        runs, pending = await _fire_one(conn, row, now, registrations, previous)
        fired.runs += runs
        assert fired.pending is not None
        fired.pending.extend(pending)
    return fired


async def _fire_one(
    conn: AsyncConnection,
    row: Row,
    now: datetime,
    registrations: Mapping[str, Registration],
    previous: Mapping[uuid.UUID, str],
) -> tuple[int, list[outbox.Pending]]:
    try:
        schedule = parse(row.cron, row.timezone)
        next_run: datetime | None = schedule.next_after(now)
    except ScheduleError as exc:
        await store_recurring.set_next_run(conn, row.id, None, str(exc))
        return 0, []
    due = [row.next_run_at, *_missed(schedule, row.next_run_at, now)]
    times = choose_runs(row.misfire, due, now)
    error = _skip_reason(row, due, times, previous)
    registration = registrations.get(row.name)
    if times and error is None:
        error = _invalid(row, registration)
    if error is not None or registration is None:
        await store_recurring.set_next_run(conn, row.id, next_run, error)
        return 0, []
    runs = [recurring.new_run(row, registration, t, _reason(row, t)) for t in times]
    pending = await _create(conn, runs, now)
    await store_recurring.set_next_run(conn, row.id, next_run, None)
    if pending:
        await recurring.record_runs(conn, row.id, runs, now)
        JOBS_ENQUEUED.labels(runs[0].queue, row.name, State.ENQUEUED.value).inc(len(runs))
        _observe_lateness(runs, pending, now)
    return len(pending), pending


def _observe_lateness(
    runs: Sequence[store.NewJob], created: Sequence[outbox.Pending], now: datetime
) -> None:
    """How long after its occurrence each run was created (a made-up missed occurrence counts
    as late as it is)."""
    ids = {p.message.job_id for p in created}
    for run in runs:
        if run.id in ids and run.scheduled_for is not None:
            late = (now - run.scheduled_for).total_seconds()
            SCHEDULER_LATENESS.labels("recurring").observe(late)


def _missed(schedule: Schedule, first: datetime, now: datetime) -> list[datetime]:
    """Occurrences after ``first`` up to ``now``: the first ones up to the strict cap, and
    beyond the cap the on-time ones, so a long outage costs a bounded amount of work."""
    head = schedule.occurrences(first, now, limit=STRICT_CAP - 1)
    if len(head) < STRICT_CAP - 1:
        return head
    return head + schedule.occurrences(max(head[-1], now - GRACE), now, limit=STRICT_CAP)


def _skip_reason(
    row: Row,
    due: Sequence[datetime],
    times: Sequence[datetime],
    previous: Mapping[uuid.UUID, str],
) -> str | None:
    if not times:
        return (
            f"skipped {len(due)} occurrence(s) missed while no scheduler ran, the last at "
            f"{due[-1].isoformat()} (misfire={row.misfire})"
        )
    last_state = previous.get(row.last_job_id) if row.last_job_id else None
    running = last_state is not None and not has_ended(last_state)
    if row.overlap == "skip" and running:
        return (
            f"skipped the run due at {times[-1].isoformat()}: the previous run "
            f"{row.last_job_id} is still {last_state} (overlap=skip)"
        )
    return None


def _invalid(row: Row, registration: Registration | None) -> str | None:
    if registration is None:
        return f"job {row.name!r} is not in the catalog; no run was created"
    try:
        validate_with_schema(registration, row.args, row.kwargs)
    except JobValidationError as exc:
        return f"{exc}; no run was created"
    return None


def _reason(row: Row, scheduled_for: datetime) -> str:
    return f"Recurring job {row.id!r}, occurrence {scheduled_for.isoformat()}"


async def _create(
    conn: AsyncConnection, runs: Sequence[store.NewJob], now: datetime
) -> list[outbox.Pending]:
    """Insert the runs; an occurrence another scheduler already created is left out."""
    try:
        async with conn.begin_nested():
            return await store.create_jobs(conn, runs, now)
    except IntegrityError:
        pass
    created: list[outbox.Pending] = []
    for run in runs:  # one at a time: keep the occurrences nobody has created yet
        try:
            async with conn.begin_nested():
                created.extend(await store.create_jobs(conn, [run], now))
        except IntegrityError:
            log.info("occurrence %s of %r already has its job", run.scheduled_for, run.recurring_id)
    return created


async def next_due(conn: AsyncConnection, clock: Clock) -> tuple[datetime, datetime | None]:
    """The store's time and the earliest ``next_run_at`` of an active definition (indexed)."""
    if is_postgres(conn) and clock is db_now:
        now, earliest = await store_recurring.clock_and_earliest_next_run(conn)
        return now.astimezone(UTC), _aware(earliest)
    now = await clock(conn)
    return now, _aware(await store_recurring.earliest_next_run(conn))


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class RecurringLoop:
    """The scheduler's recurring-jobs loop (:meth:`loop`); tests inject ``clock`` and ``sleep``."""

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: PublisherSource,
        *,
        clock: Clock = db_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.clock = clock
        self.sleep = sleep

    def loop(self) -> Loop:
        return Loop("recurring", MAX_SLEEP, self.tick)

    async def tick(self) -> bool:
        """Wait for the next due definition if it is near, fire what is due; True: look again."""
        async with self.engine.connect() as conn:
            now, earliest = await next_due(conn, self.clock)
        if earliest is None or (earliest - now).total_seconds() > MAX_SLEEP:
            return False
        if earliest > now:
            await self.sleep((earliest - now).total_seconds())
        fired = await self.fire_once()
        return fired.definitions > 0  # none: another scheduler holds them; look again later

    async def fire_once(self) -> Fired:
        async with self.engine.begin() as conn:
            fired = await fire_due(conn, await self.clock(conn))
        if fired.runs:
            log.info("recurring: %d run(s) from %d definition(s)", fired.runs, fired.definitions)
        if fired.pending:
            await self._publish(fired.pending)
        return fired

    async def _publish(self, pending: list[outbox.Pending]) -> None:
        try:
            publisher = await self.publisher()
            if publisher is None:
                return
            async with self.engine.begin() as conn:
                await outbox.publish_pending(conn, publisher, pending)
        except Exception:
            log.warning("publishing recurring runs failed; the relay will", exc_info=True)
