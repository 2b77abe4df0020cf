"""The scheduler's recurring loop with a controllable clock (no sleeping), on both stores."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, recurring, store
from orchestrator.catalog import Catalog
from orchestrator.lifecycle import Change, State
from orchestrator.models import JobRegistration
from orchestrator.store import registrations as store_registrations
from orchestrator_scheduler.recurring import RecurringLoop, fire_due

ADD = "tests.jobs_for_tests.add"
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    """The time the loop sees; tests move it by hand (forwards or backwards)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.slept: list[float] = []

    async def __call__(self, _conn: Any) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        regs = Catalog.from_modules(["tests.jobs_for_tests"]).registrations()
        await store_registrations.save(conn, regs, T0)
    return engine


async def define(engine: AsyncEngine, at: datetime = T0, **fields: Any) -> None:
    values: dict[str, Any] = {"id": "r1", "job": ADD, "cron": "* * * * *", "args": [1, 2]}
    values.update(fields)
    async with engine.begin() as conn:
        await recurring.save(conn, recurring.Definition(**values), at)


async def fire(engine: AsyncEngine, now: datetime) -> int:
    async with engine.begin() as conn:
        return (await fire_due(conn, now)).runs


async def runs(engine: AsyncEngine) -> list[sa.Row[Any]]:
    jobs = store.jobs_table
    query = sa.select(jobs).where(jobs.c.recurring_id == "r1").order_by(jobs.c.scheduled_for)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def definition(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        return await recurring.read(conn, "r1")


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


async def test_each_occurrence_runs_once_as_an_enqueued_job(db: AsyncEngine) -> None:
    await define(db)
    assert (await definition(db))["next_run_at"] == minute(1).isoformat()
    assert await fire(db, minute(1) - timedelta(milliseconds=1)) == 0
    assert await fire(db, minute(1) + timedelta(milliseconds=3)) == 1
    assert await fire(db, minute(1) + timedelta(seconds=30)) == 0
    assert await fire(db, minute(2)) == 1
    found = await runs(db)
    assert [r.scheduled_for for r in found] == [minute(1), minute(2)]
    assert {(r.state, r.name, r.queue, tuple(r.args)) for r in found} == {
        ("Enqueued", ADD, "default", (1, 2))
    }
    view = await definition(db)
    assert view["last_job_id"] == str(found[-1].id)
    assert view["last_job_state"] == "Enqueued"
    assert view["next_run_at"] == minute(3).isoformat()
    async with db.connect() as conn:
        outbox = (await conn.execute(sa.text("SELECT count(*) FROM outbox"))).scalar_one()
    assert outbox == 2


async def test_wall_clock_jumping_backwards_never_fires_twice(db: AsyncEngine) -> None:
    await define(db)
    assert await fire(db, minute(1)) == 1
    for back in (minute(0), minute(-30), minute(1)):
        assert await fire(db, back) == 0
    assert await fire(db, minute(2)) == 1
    assert len(await runs(db)) == 2


@pytest.mark.parametrize(
    ("misfire", "expected"),
    [
        # Down from minute 0 to minute 10 plus 30 s: occurrences 1..10 were missed.
        ("relaxed", [minute(10)]),
        ("strict", [minute(n) for n in range(1, 11)]),
        ("ignore", []),
    ],
)
async def test_misfire_policies(db: AsyncEngine, misfire: str, expected: list[datetime]) -> None:
    await define(db, misfire=misfire)
    now = minute(10) + timedelta(seconds=30)
    assert await fire(db, now) == len(expected)
    assert [r.scheduled_for for r in await runs(db)] == expected
    view = await definition(db)
    assert view["next_run_at"] == minute(11).isoformat()
    assert (view["error"] is not None) == (misfire == "ignore")
    assert await fire(db, now) == 0


async def test_strict_is_capped_at_one_hundred(db: AsyncEngine) -> None:
    await define(db, misfire="strict", cron="*/1 * * * * *")
    now = T0 + timedelta(hours=2)
    assert await fire(db, now) == 100
    found = await runs(db)
    assert found[0].scheduled_for == T0 + timedelta(seconds=1)
    assert found[-1].scheduled_for == T0 + timedelta(seconds=100)
    assert (await definition(db))["next_run_at"] == (now + timedelta(seconds=1)).isoformat()


async def test_overlap_skip_waits_for_the_previous_run_to_end(db: AsyncEngine) -> None:
    await define(db, overlap="skip")
    assert await fire(db, minute(1)) == 1
    (first,) = await runs(db)
    for state in (State.PROCESSING,):
        await move(db, first.id, State.ENQUEUED, state)
    assert await fire(db, minute(2)) == 0
    view = await definition(db)
    assert "still Processing" in view["error"] and view["next_run_at"] == minute(3).isoformat()
    await move(db, first.id, State.PROCESSING, State.SUCCEEDED)
    assert await fire(db, minute(3)) == 1
    assert (await definition(db))["error"] is None
    assert [r.scheduled_for for r in await runs(db)] == [minute(1), minute(3)]


async def test_overlap_allow_runs_alongside(db: AsyncEngine) -> None:
    await define(db)
    assert await fire(db, minute(1)) == 1
    assert await fire(db, minute(2)) == 1


async def move(engine: AsyncEngine, job_id: uuid.UUID, source: Any, target: Any) -> None:
    async with engine.begin() as conn:
        moved = await composition.transitions(timedelta(hours=1)).move(
            conn,
            [job_id],
            expected=[source],
            target=target,
            change=Change("test"),
            now=minute(1),
        )
        assert moved


async def test_pause_and_resume_never_backfill(db: AsyncEngine) -> None:
    await define(db, misfire="strict")
    async with db.begin() as conn:
        await recurring.set_paused(conn, "r1", True, minute(0))
    assert await fire(db, minute(30)) == 0
    async with db.begin() as conn:
        await recurring.set_paused(conn, "r1", False, minute(30) + timedelta(seconds=5))
    assert (await definition(db))["next_run_at"] == minute(31).isoformat()
    assert await fire(db, minute(30) + timedelta(seconds=10)) == 0
    assert await fire(db, minute(31)) == 1
    assert [r.scheduled_for for r in await runs(db)] == [minute(31)]


async def test_a_job_gone_from_the_catalog_is_recorded_not_raised(db: AsyncEngine) -> None:
    await define(db)
    async with db.begin() as conn:
        await conn.execute(sa.delete(JobRegistration.__table__))  # type: ignore[attr-defined]
    assert await fire(db, minute(1)) == 0
    view = await definition(db)
    assert "not in the catalog" in view["error"]
    assert view["next_run_at"] == minute(2).isoformat()


async def test_an_occurrence_already_created_elsewhere_is_not_duplicated(db: AsyncEngine) -> None:
    await define(db)
    async with db.begin() as conn:
        row = await recurring.get(conn, "r1")
        registration = Catalog.from_modules(["tests.jobs_for_tests"]).registrations()[0]
        assert registration.name == ADD
        other = recurring.new_run(row, registration, minute(1), "another scheduler")
        await store.create_jobs(conn, [other], minute(1))
    assert await fire(db, minute(1)) == 0
    assert [r.id for r in await runs(db)] == [other.id]
    assert (await definition(db))["next_run_at"] == minute(2).isoformat()


async def test_loop_tick_uses_its_clock_and_fires(db: AsyncEngine) -> None:
    clock = Clock(minute(1))

    async def no_broker() -> None:
        return None

    await define(db)
    loop = RecurringLoop(db, no_broker, clock=clock, sleep=clock.sleep)
    assert await loop.tick() is True
    assert await loop.tick() is False  # next one is a minute away: the loop's own sleep
    clock.now = minute(2) - timedelta(milliseconds=20)
    assert await loop.tick() is True  # slept the last 20 ms, then fired
    assert clock.slept == [pytest.approx(0.02)]
    assert len(await runs(db)) == 2
