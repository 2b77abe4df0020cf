"""A worker's claims as one statement (the enqueue→start path): what it moves, what it writes,
in how many statements, and when a claim must stay in a transaction instead."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, store
from orchestrator.db import create_engine, db_now
from orchestrator.filters import Filters, JobFilter
from orchestrator.lifecycle import Election, State
from orchestrator.settings import Settings
from orchestrator.store import tables
from orchestrator.transitions import Applied
from orchestrator_worker.claims import ClaimedJob, ClaimResult
from orchestrator_worker.execution import Outcome
from orchestrator_worker.intake import Delivery
from orchestrator_worker.recorder import Round, claim_alone, write_round
from orchestrator_worker.worker import Worker
from tests.worker.test_worker import CATALOG, ended, enqueue, wait_for_states

HOUR = timedelta(hours=1)
LEASE = timedelta(seconds=30)


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_url)
    yield engine
    await engine.dispose()


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` sends while the block runs."""
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


async def _jobs(engine: AsyncEngine, *, delays: list[float | None]) -> list[uuid.UUID]:
    """One job per entry: Enqueued (None), or Scheduled due ``delay`` seconds from now."""
    new = [store.NewJob(name="x", queue="default", args=[i], kwargs={}) for i in range(len(delays))]
    async with engine.begin() as conn:
        now = await db_now(conn)
        for job, delay in zip(new, delays, strict=True):
            if delay is not None:
                job.state, job.due_at = State.SCHEDULED, now + timedelta(seconds=delay)
                job.scheduled_reason = "retry"
        await store.create_jobs(conn, new, now)
    return [j.id for j in new]


class _Message:
    """What a claim reads of a delivery (its headers)."""

    headers: dict[str, Any] = {}


def _delivery() -> Delivery:
    return Delivery("default", _Message())  # type: ignore[arg-type]


def _claimed(row: Any) -> ClaimedJob:
    return ClaimedJob(
        row.id, row.name, row.queue, row.args, row.kwargs, row.attempt, None, None, row.started_at
    )


async def test_a_claim_is_one_statement_with_its_history_rows(pg: AsyncEngine) -> None:
    enqueued, due, early, twice = await _jobs(pg, delays=[None, -1.0, 3600.0, None])
    transitions = composition.transitions(HOUR)
    await transitions.claim_now(
        pg, [twice], worker_id="w0", lease=LEASE, reason="Started by w0", data={"worker": "w0"}
    )
    with statements(pg) as sent:
        now, rows = await transitions.claim_now(
            pg,
            [enqueued, due, early, twice, uuid.uuid4()],
            worker_id="w1",
            lease=LEASE,
            reason="Started by w1",
            data={"worker": "w1"},
        )
    assert len(sent) == 1, sent
    # Enqueued and a due retry are claimed; a retry not due yet, a job claimed already and a
    # job that does not exist are not.
    assert {row.id for row in rows} == {enqueued, due}
    assert all(row.attempt == 1 and row.name == "x" for row in rows)
    async with pg.connect() as conn:
        jobs = {
            r.id: r
            for r in await conn.execute(
                sa.select(tables.jobs).where(tables.jobs.c.id.in_([enqueued, due, early, twice]))
            )
        }
        history = await store.get_history(conn, due)
    for job_id in (enqueued, due):
        job = jobs[job_id]
        assert (job.state, job.worker_id, job.started_at, job.state_changed_at) == (
            "Processing",
            "w1",
            now,
            now,
        )
        assert job.lease_until == now + LEASE
        assert (job.due_at, job.scheduled_reason, job.expires_at) == (None, None, None)
    assert (jobs[early].state, jobs[early].attempt) == ("Scheduled", 0)
    assert (jobs[twice].state, jobs[twice].worker_id) == ("Processing", "w0")
    assert [(h.state, h.reason, h.data, h.at) for h in history[1:]] == [
        ("Processing", "Started by w1", {"worker": "w1"}, now)
    ]


async def test_a_claim_of_nothing_still_tells_the_time(pg: AsyncEngine) -> None:
    async with pg.connect() as conn:
        before = await db_now(conn)
    now, rows = await composition.transitions(HOUR).claim_now(
        pg, [uuid.uuid4()], worker_id="w", lease=LEASE, reason="r", data={}
    )
    assert rows == []
    assert now >= before


class _Watcher(JobFilter):
    async def applied(self, context: Applied) -> None:
        return None


class _Elector(JobFilter):
    def elect(self, election: Election) -> None:
        return None


async def test_only_a_move_no_hook_or_filter_writes_for_is_one_statement(
    pg: AsyncEngine,
) -> None:
    plain = composition.transitions(HOUR)
    assert plain.writes_only_rows(State.PROCESSING)
    assert plain.writes_only_rows(State.ENQUEUED)
    # An ending is followed and counted in its transaction.
    for ending in (State.SUCCEEDED, State.FAILED, State.DELETED):
        assert not plain.writes_only_rows(ending)
    # A filter's applied hook sees each change inside its transaction; an elector chooses.
    for item in (_Watcher(), _Elector()):
        watched = composition.transitions(HOUR, Filters([item]))
        assert not watched.writes_only_rows(State.PROCESSING)
    (job,) = await _jobs(pg, delays=[None])
    watched = composition.transitions(HOUR, Filters([_Watcher()]))
    with statements(pg) as sent, pytest.raises(RuntimeError):
        # Refused rather than committed before the hook could see it.
        await watched.claim_now(pg, [job], worker_id="w", lease=LEASE, reason="r", data={})
    assert sent == []


async def test_a_worker_claims_in_one_statement_unless_a_filter_watches(
    make_settings: Callable[..., Settings], postgres_url: str
) -> None:
    """The worker's own choice: its claims go out as the one statement above, and a worker
    whose filters watch changes claims in a transaction the filters' hooks see."""
    for filters, one_statement in (([], True), ([_Watcher()], False)):
        settings = make_settings(postgres_url, worker_ops_port=0, worker_concurrency=2)
        worker = Worker(settings, CATALOG, shutdown_grace=5, filters=filters)
        stop = asyncio.Event()
        with statements(worker.engine) as sent:
            task = asyncio.create_task(worker.run(stop))
            try:
                await asyncio.wait_for(worker.ready.wait(), 20)
                ids = await enqueue(settings, [("tests.add", [1, 2], "default")])
                rows = await wait_for_states(settings, ids, ended)
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
        assert rows[ids[0]].state == "Succeeded"
        claims = [s for s in sent if "FOR NO KEY UPDATE OF j" in s]
        assert bool(claims) is one_statement, (filters, claims)


async def test_an_outcome_round_moves_and_writes_history_in_one_statement(
    pg: AsyncEngine,
) -> None:
    """A round's clock comes with its lock, and each move's history rows with its UPDATE."""
    ids = await _jobs(pg, delays=[None, None, None])
    setup = Round("w", LEASE, composition.transitions(HOUR), Filters())
    claimed = ClaimResult({}, [], [])
    await claim_alone(pg, ClaimResult({}, [(_delivery(), i) for i in ids], []), setup)
    async with pg.connect() as conn:
        rows = (await conn.execute(sa.select(tables.jobs).where(tables.jobs.c.id.in_(ids)))).all()
    by_id = {row.id: _claimed(row) for row in rows}
    jobs = [by_id[i] for i in ids]
    outcomes = [Outcome(jobs[0], True, result=1), Outcome(jobs[1], True, result=2)]
    outcomes.append(Outcome(jobs[2], False, error_type="E", error_message="no"))
    with statements(pg) as sent:
        async with pg.begin() as conn:
            now, recorded, _ = await write_round(conn, outcomes, claimed, setup)
    assert {recorded[i].state for i in ids[:2]} == {State.SUCCEEDED}
    assert "clock_timestamp()" in sent[0] and "FOR NO KEY UPDATE" in sent[0]
    moves = [s for s in sent if "UPDATE jobs" in s]
    assert moves and all("INSERT INTO job_history" in s for s in moves), moves
    assert not [s for s in sent if "job_history" in s and "UPDATE jobs" not in s]
    async with pg.connect() as conn:
        history = await store.get_history(conn, ids[0])
    assert [(h.state, h.at) for h in history[2:]] == [("Succeeded", now)]
    assert history[2].data == {"duration": 0.0}
