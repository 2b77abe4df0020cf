"""A slot bounds the jobs running at once: it is free when a job's code returns, while its
outcome still waits for the store; at most ``concurrency`` outcomes wait so.

The test holds the outcome rounds: a transaction of its own takes the per-hour counters table
in SHARE mode, which every outcome round's counter INSERT waits for (a claim writes no counter,
so claims go on). With one slot, the second job must run while the first one's outcome waits
(before, a slot was held until its outcome was recorded); the third must not, since one outcome
already waits; once the lock goes every job ends Succeeded, each run once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchestrator import store
from orchestrator.db import create_engine, db_now
from orchestrator.settings import Settings
from orchestrator.store import tables
from tests.worker.test_shutdown_claims import publish, running, until
from tests.worker.test_worker import wait_for_states


@pytest.mark.timeout(120)
async def test_a_slot_is_free_while_the_outcome_waits_for_its_round(
    make_settings: Callable[..., Settings], postgres_url: str, tmp_path: Path
) -> None:
    settings = make_settings(postgres_url, worker_ops_port=0, worker_concurrency=1)
    engine = create_engine(postgres_url)
    marks = tmp_path / "marks.txt"

    def ran() -> list[str]:
        return marks.read_text().splitlines() if marks.exists() else []

    try:
        async with running(settings) as first, engine.connect() as locker:
            worker = first.worker
            await locker.begin()
            await locker.execute(sa.text(f"LOCK TABLE {tables.counters.name} IN SHARE MODE"))
            new = [
                store.NewJob(
                    name="tests.record", queue="default", args=[str(marks), f"job{n}"], kwargs={}
                )
                for n in range(3)
            ]
            async with engine.begin() as conn:
                pending = await store.create_jobs(conn, new, await db_now(conn))
            ids: list[uuid.UUID] = [j.id for j in new]
            try:
                await publish(settings, engine, pending[:1])

                async def first_waits() -> bool:
                    # It ran; its outcome round waits for the lock (the job is Processing still).
                    state = await wait_for_states(settings, ids[:1], lambda s: True)
                    return ran() == ["job0"] and state[ids[0]].state == "Processing"

                await until(first_waits, "the first job ran, its outcome waiting")
                await publish(settings, engine, pending[1:])

                async def second_ran() -> bool:
                    return ran() == ["job0", "job1"]

                await until(second_ran, "the second job ran on the slot the first freed")

                async def second_returned() -> bool:
                    task = worker.running[ids[1]].task
                    return task is not None and task.done()

                # Its outcome handed to the round, the second job keeps its slot: one outcome
                # waits already, so the intake has no free slot and cannot take the third.
                await until(second_returned, "the second job's code returned")
                assert worker.intake.free == 0
                assert ran() == ["job0", "job1"]
                assert worker.jobs.recording == {ids[0]}  # one outcome waits with a free slot
                assert set(worker.running) == {ids[0], ids[1]}  # both are still this worker's
            finally:
                await locker.rollback()
            done = await wait_for_states(settings, ids, lambda s: s in ("Succeeded", "Failed"))
            assert [done[j].state for j in ids] == ["Succeeded"] * 3
            assert sorted(ran()) == ["job0", "job1", "job2"]
            assert worker.jobs.recording == set()
            assert worker.intake.free == 1
    finally:
        await engine.dispose()
