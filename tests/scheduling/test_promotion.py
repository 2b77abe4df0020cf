"""Delayed jobs: promotion on time (controllable clock), exactly once, woken early; the lease."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import composition, store
from orchestrator.db import create_engine, db_now
from orchestrator.lifecycle import State
from orchestrator.outbox import OutboxSender
from orchestrator_scheduler.leadership import Leadership, try_acquire
from orchestrator_scheduler.promotion import Promoter

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
TRANSITIONS = composition.transitions(HOUR)


class Clock:
    """The database clock as the promoter sees it, set by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    async def __call__(self, conn: AsyncConnection) -> datetime:
        return self.now


async def _sleeps(promoter: Promoter, expected: float) -> bool:
    """One step asks to sleep ``expected`` seconds, less only the time the step itself took
    (the sleep is measured from when the clock was read), however loaded the machine is."""
    started = time.monotonic()
    sleep = await promoter.step()
    took = time.monotonic() - started
    return expected - took - 1e-6 <= sleep <= expected + 1e-6


async def _schedule(engine: AsyncEngine, *due: datetime) -> list[uuid.UUID]:
    jobs = [
        store.NewJob(
            name="x",
            queue="default",
            args=[],
            kwargs={},
            state=State.SCHEDULED,
            due_at=at,
            scheduled_reason="delay",
        )
        for at in due
    ]
    async with engine.begin() as conn:
        await store.create_jobs(conn, jobs, min(due) - HOUR)
    return [j.id for j in jobs]


async def _states(engine: AsyncEngine, ids: list[uuid.UUID]) -> list[str]:
    async with engine.connect() as conn:
        return [(await store.get_job(conn, i)).state for i in ids]


@pytest.fixture
async def sender(engine: AsyncEngine) -> AsyncIterator[OutboxSender]:
    """The real fast path with no broker: entries stay in the outbox for the relay."""
    running = OutboxSender(engine, None)
    running.start()
    yield running
    await running.stop()


async def test_promotes_each_job_when_due_and_sleeps_until_the_next(
    engine: AsyncEngine, sender: OutboxSender
) -> None:
    first, second = await _schedule(engine, T0 + timedelta(seconds=1), T0 + timedelta(seconds=3))
    clock = Clock(T0)
    promoter = Promoter(engine, sender, TRANSITIONS, clock=clock, max_sleep=5.0)
    assert await _sleeps(promoter, 1.0)
    assert await _states(engine, [first, second]) == ["Scheduled", "Scheduled"]
    clock.now = T0 + timedelta(seconds=1)
    assert await _sleeps(promoter, 2.0)
    assert await _states(engine, [first, second]) == ["Enqueued", "Scheduled"]
    async with engine.connect() as conn:
        history = await store.get_history(conn, first)
    assert [(h.state, h.reason, h.at) for h in history[1:]] == [("Enqueued", "Due", clock.now)]
    assert history[1].data == {"due_at": (T0 + timedelta(seconds=1)).isoformat()}
    clock.now = T0 + timedelta(seconds=3)
    assert await _sleeps(promoter, 5.0)  # nothing left: the cap
    assert await _states(engine, [first, second]) == ["Enqueued", "Enqueued"]
    assert promoter.promoted == 2


async def test_a_wall_clock_jumping_backwards_caps_the_sleep(
    engine: AsyncEngine, sender: OutboxSender
) -> None:
    (job,) = await _schedule(engine, T0 + timedelta(seconds=2))
    clock = Clock(T0)
    promoter = Promoter(engine, sender, TRANSITIONS, clock=clock, max_sleep=5.0)
    assert await _sleeps(promoter, 2.0)
    clock.now = T0 - timedelta(days=1)  # the host clock was set back a day
    assert await _sleeps(promoter, 5.0)  # never a day, never < 0
    assert await _states(engine, [job]) == ["Scheduled"]
    clock.now = T0 + timedelta(seconds=2)  # and once time catches up, it runs
    await promoter.step()
    assert await _states(engine, [job]) == ["Enqueued"]


async def test_batches_and_inactive_promoter(engine: AsyncEngine, sender: OutboxSender) -> None:
    ids = await _schedule(engine, *[T0 + timedelta(milliseconds=i) for i in range(25)])
    clock = Clock(T0 + timedelta(seconds=1))
    idle = Promoter(engine, sender, TRANSITIONS, clock=clock, active=lambda: False)
    assert await idle.step() == idle.max_sleep
    assert set(await _states(engine, ids)) == {"Scheduled"}
    promoter = Promoter(engine, sender, TRANSITIONS, clock=clock, batch=10)
    assert [await promoter.step() for _ in range(2)] == [0.0, 0.0]
    assert await _sleeps(promoter, 5.0)
    assert set(await _states(engine, ids)) == {"Enqueued"}


async def test_a_burst_goes_out_in_growing_batches(
    engine: AsyncEngine, sender: OutboxSender
) -> None:
    """The first jobs of a burst are promoted (and published) in a small batch, the next ones
    in batches doubling up to the largest; after a sleep the next burst starts small again."""
    ids = await _schedule(engine, *[T0 + timedelta(milliseconds=i) for i in range(100)])
    clock = Clock(T0 + timedelta(seconds=1))
    promoter = Promoter(engine, sender, TRANSITIONS, clock=clock, batch=40, first_batch=10)
    sizes = []
    while True:
        before = promoter.promoted
        sleep = await promoter.step()
        sizes.append(promoter.promoted - before)
        if sleep > 0:
            break
    assert sizes == [10, 20, 40, 30]
    assert set(await _states(engine, ids)) == {"Enqueued"}
    later = await _schedule(engine, *[T0 + timedelta(seconds=2)] * 15)
    clock.now = T0 + timedelta(seconds=3)
    assert await promoter.step() == 0.0
    assert promoter.promoted == 110  # a small batch again
    await promoter.step()
    assert set(await _states(engine, later)) == {"Enqueued"}


async def test_several_promoters_promote_each_job_once(postgres_url: str) -> None:
    engines = [create_engine(postgres_url) for _ in range(3)]
    try:
        ids = await _schedule(engines[0], *[T0 + timedelta(microseconds=i) for i in range(3000)])
        clock = Clock(T0 + timedelta(seconds=1))
        promoters = []
        for engine in engines:
            promoters.append(
                Promoter(engine, OutboxSender(engine, None), TRANSITIONS, clock=clock, batch=200)
            )

        async def drain(promoter: Promoter) -> None:
            while await promoter.step() == 0.0:
                pass

        await asyncio.gather(*(drain(p) for p in promoters))
        assert sum(p.promoted for p in promoters) == 3000
        assert all(p.promoted > 0 for p in promoters)  # SKIP LOCKED shared the work
        async with engines[0].connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT job_id, count(*) FROM job_history WHERE state = 'Enqueued' "
                    "GROUP BY job_id"
                )
            )
            counts = dict(rows.all())
        assert set(counts) == set(ids) and set(counts.values()) == {1}
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_hint_cuts_the_sleep_short(engine: AsyncEngine, sender: OutboxSender) -> None:
    promoter = Promoter(engine, sender, TRANSITIONS, max_sleep=5.0)
    stop = asyncio.Event()
    ticking = asyncio.create_task(promoter.tick(stop))
    await asyncio.sleep(0.2)  # asleep now, nothing due: up to 5 s
    async with engine.connect() as conn:
        now = await db_now(conn)
    promoter.hint((now + timedelta(hours=2)).timestamp())
    (job,) = await _schedule(engine, now + timedelta(milliseconds=100))
    promoter.hint((now + timedelta(milliseconds=100)).timestamp())
    started = time.monotonic()
    await asyncio.wait_for(ticking, 1.0)  # woken, long before the 5 s cap
    assert await promoter.tick(stop) is True  # sleeps until due, then promotes
    await promoter.step()
    assert await _states(engine, [job]) == ["Enqueued"]
    assert time.monotonic() - started < 1.0
    stop.set()


async def test_lease_is_a_compare_and_set_by_database_time(engine: AsyncEngine) -> None:
    ttl = timedelta(seconds=0.5)
    async with engine.begin() as conn:
        assert await try_acquire(conn, "scheduler", "a", ttl)
    async with engine.begin() as conn:
        assert not await try_acquire(conn, "scheduler", "b", ttl)
        assert await try_acquire(conn, "scheduler", "a", ttl)  # renewal
    await asyncio.sleep(0.6)
    async with engine.begin() as conn:
        assert await try_acquire(conn, "scheduler", "b", ttl)  # expired: taken over
        assert not await try_acquire(conn, "scheduler", "a", ttl)


async def test_a_leader_stops_acting_before_its_lease_expires(engine: AsyncEngine) -> None:
    gained: list[str] = []
    leader = Leadership(
        engine, "a", ttl=1.0, renew_every=0.5, margin=0.3, on_gain=lambda: gained.append("a")
    )
    other = Leadership(engine, "b", ttl=1.0, renew_every=0.5, margin=0.3)
    await leader.tick()
    await other.tick()
    assert leader.held() and not other.held() and gained == ["a"]
    # The leader can no longer renew (think: lost its session). It stops acting by its own
    # monotonic clock before the store lets anyone else in.
    await asyncio.sleep(0.75)
    assert not leader.held()
    await other.tick()
    assert not other.held()  # the lease has not expired in the store yet
    await asyncio.sleep(0.35)
    await other.tick()
    assert other.held()
    await other.release()
    await leader.tick()
    assert leader.held() and gained == ["a", "a"]
