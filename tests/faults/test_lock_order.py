"""No deadlocks: every transaction that locks several job rows takes them in ascending id order.

Workers' write rounds (outcomes and claims in one transaction; claims alone in one statement),
their heartbeats' lease renewals, shutdown hand-backs, the scheduler's lease expiry and
promotions, the janitor's removal of expired jobs (their ``Awaiting`` children deleted first,
"Parent expired"), and the API's requeues, deletes (deleted jobs expire at once, so the janitor
removes them while the others still touch them) and enqueues of continuations (which lock their
parents ``FOR SHARE``) run concurrently on PostgreSQL against one small set of jobs, each
touching random overlapping subsets in random order, for a bounded time. PostgreSQL counts
every deadlock it breaks in ``pg_stat_database.deadlocks``; the count must not move.

The lease expiry, promotion and janitor pick their rows ``FOR UPDATE SKIP LOCKED`` in time
order, not id order: docs/architecture.md ("Lock order") says why that cannot deadlock, and
this test runs them against every other kind of transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, interventions, store
from orchestrator.db import create_engine, db_now
from orchestrator.errors import ConflictError, JobNotFoundError
from orchestrator.filters import Filters
from orchestrator.lifecycle import FINAL, Change, State
from orchestrator.store.creation import parent_states
from orchestrator_janitor.expiry import expire_failed_jobs, expire_jobs
from orchestrator_scheduler.leases import expire_leases
from orchestrator_scheduler.promotion import promote_due
from orchestrator_worker.claims import ClaimedJob, ClaimResult
from orchestrator_worker.execution import Outcome
from orchestrator_worker.intake import Delivery
from orchestrator_worker.ownership import hand_back, renew_leases
from orchestrator_worker.recorder import Round, claim_alone, write_round

JOBS = 48
WORKERS = 4
#: How long the roles run (a bound on the test, not a measurement).
LOAD_SECONDS = float(os.environ.get("ORCHESTRATOR_LOCK_ORDER_SECONDS", "8"))
HOUR = timedelta(hours=1)
TRANSITIONS = composition.transitions(HOUR)
#: A person's deletes with jobs expiring at once, so the janitor removes them meanwhile.
EXPIRING = composition.transitions(timedelta(0))


@dataclass
class _Message:
    """What the claim reads of a delivery (its body is never decoded here)."""

    headers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Load:
    rng: random.Random
    ids: list[uuid.UUID]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    errors: list[str] = field(default_factory=list)
    rounds: int = 0
    #: Jobs the janitor removed (so removal really ran alongside the others).
    removed: int = 0

    def sample(self, population: list[uuid.UUID], most: int) -> list[uuid.UUID]:
        picked = self.rng.sample(population, self.rng.randint(0, min(most, len(population))))
        self.rng.shuffle(picked)
        return picked

    async def repeat(self, step: Callable[[], Awaitable[None]]) -> None:
        while not self.stop.is_set():
            try:
                await step()
                self.rounds += 1
            except sa.exc.DBAPIError as exc:
                cause = exc.orig.__cause__ if exc.orig is not None else None
                detail = getattr(cause, "detail", None) or ""
                self.errors.append(f"{step.__qualname__}: {exc.orig} {detail}")
            await asyncio.sleep(self.rng.uniform(0, 0.002))


class SimulatedWorker:
    """A worker's store side, driven by the real functions: write rounds, renewals, hand-backs."""

    def __init__(self, load: Load, engine: AsyncEngine, number: int) -> None:
        self.load = load
        self.engine = engine
        self.id = f"worker-{number}"
        self.running: dict[uuid.UUID, ClaimedJob] = {}
        self.setup = Round(self.id, timedelta(seconds=0.3), TRANSITIONS, Filters())

    async def write(self) -> None:
        rng = self.load.rng
        finishing = self.load.sample(list(self.running), 12)
        outcomes = [
            Outcome(self.running[i], rng.random() < 0.8, error_type="E", error_message="x")
            for i in finishing
        ]
        deliveries = [
            (Delivery("default", _Message()), job_id)  # type: ignore[arg-type]
            for job_id in self.load.sample(self.load.ids, 12)
        ]
        batch = ClaimResult({}, deliveries, [])
        recorded: dict[object, object] = {}
        if not outcomes:
            # Claims alone: one statement that commits on its own, as the worker sends them.
            await claim_alone(self.engine, batch, self.setup)
        else:
            async with self.engine.begin() as conn:
                _, recorded, _ = await write_round(conn, outcomes, batch, self.setup)
        for job_id in finishing:
            if job_id in recorded:
                self.running.pop(job_id, None)
        self.running.update(batch.claimed)

    async def renew(self) -> None:
        mine = list(self.running)
        self.load.rng.shuffle(mine)
        kept = await renew_leases(self.engine, self.id, mine, self.setup.lease)
        for job_id in mine:
            if job_id not in kept:
                self.running.pop(job_id, None)

    async def hand_back(self) -> None:
        await asyncio.sleep(self.load.rng.uniform(0, 0.05))
        back = self.load.sample(list(self.running), 6)
        await hand_back(self.engine, TRANSITIONS, self.id, back)
        for job_id in back:
            self.running.pop(job_id, None)


async def _requeue(load: Load, engine: AsyncEngine) -> None:
    """A person requeues ended jobs (the API's move), and Scheduled ones to run now."""
    async with engine.begin() as conn:
        await TRANSITIONS.move(
            conn,
            load.sample(load.ids, 16),
            expected={State.SUCCEEDED, State.FAILED, State.SCHEDULED},
            target=State.ENQUEUED,
            change=Change("Requeued"),
            now=await db_now(conn),
        )


async def _delete(load: Load, engine: AsyncEngine) -> None:
    """A person deletes jobs through the API (one job per request, any state); they expire at
    once, so the janitor removes them while other roles may still be moving them."""
    for job_id in load.sample(load.ids, 3):
        # 404 (removed by the janitor meanwhile) and 409 (moved while being deleted) are the
        # API's answers, not failures of the lock order.
        with contextlib.suppress(JobNotFoundError, ConflictError):
            async with engine.begin() as conn:
                await interventions.delete_job(
                    conn, EXPIRING, job_id, await db_now(conn), "Deleted through the API"
                )


async def _janitor(load: Load, engine: AsyncEngine) -> None:
    """The janitor's expiry: expired Succeeded/Deleted jobs and Failed ones, oldest first."""
    removed = await expire_jobs(engine, TRANSITIONS, batch=20)
    removed += await expire_failed_jobs(engine, TRANSITIONS, batch=20, failed_for=timedelta(0))
    load.removed += removed
    if removed:
        async with engine.connect() as conn:
            left = set((await conn.execute(sa.select(store.jobs_table.c.id))).scalars())
        load.ids[:] = [job_id for job_id in load.ids if job_id in left]


async def _enqueue(load: Load, engine: AsyncEngine) -> None:
    """The API's enqueue of new jobs and of continuations of existing ones: their parents are
    locked ``FOR SHARE`` first (``parent_states``), so a parent ending meanwhile sees its child.
    Keeps the set of jobs from running out while the janitor removes some."""
    chosen = load.sample(load.ids, 3)
    async with engine.begin() as conn:
        parents = await parent_states(conn, set(chosen))
        fresh = [store.NewJob(name="lock.order", queue="default", args=[], kwargs={})]
        for parent_id, state in parents.items():
            waiting = state not in {s.value for s in FINAL} and state != "Failed"
            fresh.append(
                store.NewJob(
                    name="lock.order",
                    queue="default",
                    args=[],
                    kwargs={},
                    state=State.AWAITING if waiting else State.ENQUEUED,
                    parent_id=parent_id,
                    continue_on="finished",
                )
            )
        await store.create_jobs(conn, fresh, await db_now(conn))
    load.ids.extend(job.id for job in fresh)


async def _scheduler(load: Load, engine: AsyncEngine) -> None:
    """The leading scheduler: lease expiry, then promotion of due jobs."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        await expire_leases(conn, TRANSITIONS, now, lost_limit=1000, limit=50)
    async with engine.begin() as conn:
        now = await db_now(conn)
        await promote_due(conn, TRANSITIONS, now, limit=50, retry_grace=timedelta(0))


async def _create_jobs(engine: AsyncEngine, rng: random.Random) -> list[uuid.UUID]:
    """Jobs, a quarter of them continuations of another (so endings move children too)."""
    parents = [store.NewJob(name="lock.order", queue="default", args=[], kwargs={})]
    while len(parents) < JOBS * 3 // 4:
        parents.append(store.NewJob(name="lock.order", queue="default", args=[], kwargs={}))
    children = [
        store.NewJob(
            name="lock.order",
            queue="default",
            args=[],
            kwargs={},
            state=State.AWAITING,
            parent_id=rng.choice(parents).id,
            continue_on="finished",
        )
        for _ in range(JOBS - len(parents))
    ]
    async with engine.begin() as conn:
        await store.create_jobs(conn, [*parents, *children], await db_now(conn))
    return [job.id for job in [*parents, *children]]


async def _deadlocks(url: str) -> int:
    """The database's deadlock count once every other session has gone (a backend flushes
    its statistics when it exits)."""
    engine = create_engine(url)
    try:
        while True:
            async with engine.connect() as conn:
                others = await conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
                if others == 0:
                    count = await conn.scalar(
                        sa.text(
                            "SELECT deadlocks FROM pg_stat_database "
                            "WHERE datname = current_database()"
                        )
                    )
                    return int(count or 0)
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


async def test_concurrent_moves_never_deadlock(postgres_url: str) -> None:
    seed = int(os.environ.get("ORCHESTRATOR_LOCK_ORDER_SEED", random.randrange(2**32)))
    print(f"lock order seed {seed}")
    rng = random.Random(seed)
    name = urlsplit(postgres_url).path.lstrip("/")
    admin = create_engine(postgres_url)
    async with admin.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        # Deadlocks are found (and counted) sooner; sessions opened from here on use it.
        await conn.execute(sa.text(f"ALTER DATABASE \"{name}\" SET deadlock_timeout = '20ms'"))
    ids = await _create_jobs(admin, rng)
    await admin.dispose()
    before = await _deadlocks(postgres_url)

    load = Load(rng, ids)
    engines = [create_engine(postgres_url) for _ in range(WORKERS + 4)]
    api, janitor, creator = engines[-2], engines[-3], engines[-4]
    workers = [SimulatedWorker(load, engines[n], n) for n in range(WORKERS)]
    roles = [
        *(load.repeat(w.write) for w in workers),
        *(load.repeat(w.renew) for w in workers),
        *(load.repeat(w.hand_back) for w in workers),
        load.repeat(lambda: _requeue(load, api)),
        load.repeat(lambda: _delete(load, api)),
        load.repeat(lambda: _enqueue(load, creator)),
        load.repeat(lambda: _scheduler(load, engines[-1])),
        load.repeat(lambda: _janitor(load, janitor)),
    ]
    tasks = [asyncio.create_task(role) for role in roles]
    await asyncio.sleep(LOAD_SECONDS)
    load.stop.set()
    await asyncio.gather(*tasks)
    for engine in engines:
        await engine.dispose()
    after = await _deadlocks(postgres_url)

    print(
        f"lock order: {load.rounds} transactions, {load.removed} jobs removed by the janitor, "
        f"deadlocks {after - before}"
    )
    assert load.rounds > 100
    assert load.removed > 0
    assert after - before == 0, f"{after - before} deadlocks (seed {seed}): {load.errors[:3]}"
    assert load.errors == []
