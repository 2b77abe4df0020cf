"""Crash recovery: expired leases re-enqueue their job once, or fail it after N worker losses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, interventions, store
from orchestrator.lifecycle import Change, State
from orchestrator.models import OutboxEntry
from orchestrator.outbox import OutboxSender
from orchestrator.store import jobs_table
from orchestrator_scheduler.leases import LeaseExpiry, OutageGuard, expire_leases

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
LEASE = timedelta(seconds=30)
HOUR = timedelta(hours=1)
TRANSITIONS = composition.transitions(HOUR)
_outbox = OutboxEntry.__table__  # type: ignore[attr-defined]


async def _running(engine: AsyncEngine, worker: str, at: datetime = T0) -> uuid.UUID:
    """A job claimed by ``worker`` at ``at`` with a lease until ``at + LEASE``."""
    new = store.NewJob(name="x", queue="default", args=[], kwargs={})
    async with engine.begin() as conn:
        await store.create_jobs(conn, [new], at - HOUR)
        await _claim(conn, new.id, worker, at)
    return new.id


async def _claim(
    conn: sa.ext.asyncio.AsyncConnection, job_id: uuid.UUID, worker: str, at: datetime
) -> None:
    await TRANSITIONS.move(
        conn,
        [job_id],
        expected={State.ENQUEUED},
        target=State.PROCESSING,
        change=Change(
            f"Started by {worker}",
            values={
                "attempt": jobs_table.c.attempt + 1,
                "lease_until": at + LEASE,
                "worker_id": worker,
            },
        ),
        now=at,
    )


async def _expire(engine: AsyncEngine, now: datetime, limit: int = 3) -> tuple[int, int, int]:
    async with engine.begin() as conn:
        done = await expire_leases(conn, TRANSITIONS, now, lost_limit=limit)
    return done.requeued, done.failed, len(done.pending)


async def _job(engine: AsyncEngine, job_id: uuid.UUID) -> sa.Row:  # type: ignore[type-arg]
    async with engine.connect() as conn:
        return await store.get_job(conn, job_id)


async def test_an_expired_lease_re_enqueues_the_job_once(engine: AsyncEngine) -> None:
    job_id = await _running(engine, "worker:a")
    assert await _expire(engine, T0 + LEASE - timedelta(seconds=1)) == (0, 0, 0)
    assert await _expire(engine, T0 + LEASE + timedelta(seconds=1)) == (1, 0, 1)
    assert await _expire(engine, T0 + LEASE + timedelta(seconds=2)) == (0, 0, 0)  # once
    job = await _job(engine, job_id)
    assert (job.state, job.lost_count, job.worker_id, job.lease_until) == (
        "Enqueued",
        1,
        None,
        None,
    )
    async with engine.connect() as conn:
        history = await store.get_history(conn, job_id)
        queued = (await conn.execute(sa.select(_outbox.c.job_id, _outbox.c.queue))).all()
    assert history[-1].state == "Enqueued"
    assert "worker:a" in history[-1].reason and "Lease expired" in history[-1].reason
    assert (job_id, "default") in [tuple(r) for r in queued]


async def test_a_renewed_lease_is_left_alone(engine: AsyncEngine) -> None:
    job_id = await _running(engine, "worker:a")
    async with engine.begin() as conn:  # the worker renews before the scheduler looks
        await conn.execute(
            sa.update(jobs_table)
            .where(jobs_table.c.id == job_id)
            .values(lease_until=T0 + 2 * LEASE)
        )
    assert await _expire(engine, T0 + LEASE + timedelta(seconds=1)) == (0, 0, 0)
    assert (await _job(engine, job_id)).state == "Processing"


async def test_the_third_lost_worker_fails_the_job(engine: AsyncEngine) -> None:
    job_id = await _running(engine, "worker:a")
    now = T0
    for n, worker in enumerate(["worker:b", "worker:c"], start=1):
        now += LEASE + timedelta(seconds=1)
        assert await _expire(engine, now) == (1, 0, 1)
        assert (await _job(engine, job_id)).lost_count == n
        async with engine.begin() as conn:
            await _claim(conn, job_id, worker, now)
    now += LEASE + timedelta(seconds=1)
    assert await _expire(engine, now) == (0, 1, 0)
    job = await _job(engine, job_id)
    assert (job.state, job.lost_count, job.error_type) == ("Failed", 3, "WorkerLost")
    assert job.attempt == 3 and "worker:c" in job.error_message
    async with engine.connect() as conn:
        history = await store.get_history(conn, job_id)
    assert history[-1].reason.startswith("Worker lost")
    # A person's requeue gives the job a fresh budget of losses too.
    async with engine.begin() as conn:
        await interventions.requeue_job(conn, TRANSITIONS, job_id, now, "Requeued")
    assert (await _job(engine, job_id)).lost_count == 0


async def test_a_configured_limit_of_one_fails_at_the_first_loss(engine: AsyncEngine) -> None:
    job_id = await _running(engine, "worker:a")
    assert await _expire(engine, T0 + 2 * LEASE, limit=1) == (0, 1, 0)
    assert (await _job(engine, job_id)).state == "Failed"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sender(engine: AsyncEngine) -> AsyncIterator[OutboxSender]:
    running = OutboxSender(engine, None)
    running.start()
    yield running
    await running.stop()


async def test_the_loop_expires_nothing_while_held_back(
    engine: AsyncEngine, sender: OutboxSender
) -> None:
    job_id = await _running(engine, "worker:a", at=datetime.now(UTC) - 2 * LEASE)
    clock = FakeClock()
    guard = OutageGuard(30.0, silence=5.0, clock=clock)
    clock.now += 60.0
    guard.contact(True)  # the store just came back
    expiry = LeaseExpiry(engine, sender, guard, TRANSITIONS, lost_limit=3, interval=1.0)
    assert await expiry.tick() is False
    assert (await _job(engine, job_id)).state == "Processing"
    clock.now += 31.0
    await expiry.tick()
    assert (await _job(engine, job_id)).state == "Enqueued"
