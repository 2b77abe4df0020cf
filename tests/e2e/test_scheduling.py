"""End to end on PostgreSQL and RabbitMQ: real API, worker and two scheduler processes.

Delayed jobs run on time and exactly once while the active scheduler is killed with SIGKILL;
continuations and batches run through the worker.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchestrator import Client
from orchestrator.db import create_engine
from tests import worker_jobs
from tests.support.system import System

pytestmark = pytest.mark.e2e


@pytest.fixture
def system(postgres_url: str, amqp_url: str, tmp_path: Path) -> Iterator[System]:
    running = System(
        database_url=postgres_url, jobs="tests.worker_jobs", amqp_url=amqp_url, log_dir=tmp_path
    )
    try:
        running.start("api", "api")
        running.start("worker", "worker", "--concurrency", "8")
        running.start("scheduler1", "scheduler")
        running.start("scheduler2", "scheduler")
        running.wait_for_api()
        running.wait_for_catalog("tests.add")
        yield running
    finally:
        running.stop_all()


async def _query(url: str, statement: str) -> list[sa.Row]:  # type: ignore[type-arg]
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.text(statement))).all())
    finally:
        await engine.dispose()


def _leader_pid(system: System) -> int | None:
    rows = asyncio.run(
        _query(
            system.database_url,
            "SELECT s.pid FROM leases l JOIN servers s ON s.id = l.holder "
            "WHERE l.name = 'scheduler' AND l.expires_at > clock_timestamp()",
        )
    )
    return int(rows[0].pid) if rows else None


def _wait_leader(system: System, other_than: int | None, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _leader_pid(system)
        if pid is not None and pid != other_than:
            return pid
        time.sleep(0.05)
    raise AssertionError(f"no new scheduler leader within {timeout} s")


def test_killed_leader_is_replaced_and_each_delayed_job_runs_once(system: System) -> None:
    leader = _wait_leader(system, None, 15)
    with Client(system.api_url) as client:
        ids = [
            client.schedule(worker_jobs.add.call(i, i), delay=timedelta(seconds=0.5 + i * 0.1))
            for i in range(60)
        ]
        time.sleep(2.0)  # some jobs run under the first leader, most after it is killed
        name = next(n for n, p in system.processes.items() if p.pid == leader)
        killed_at = time.monotonic()
        system.stop(name, signal.SIGKILL)
        _wait_leader(system, leader, 10)
        takeover = time.monotonic() - killed_at
        print(f"scheduler takeover after kill -9: {takeover:.2f} s")
        assert takeover < 10
        assert [client.wait(i, timeout=20) for i in ids] == [2 * i for i in range(60)]
    rows = asyncio.run(
        _query(
            system.database_url,
            "SELECT job_id, count(*) AS n FROM job_history WHERE state = 'Enqueued' "
            "GROUP BY job_id",
        )
    )
    assert {str(r.job_id) for r in rows} == set(ids)
    assert {r.n for r in rows} == {1}  # promoted exactly once, through both schedulers


def test_continuations_and_batches_run_through_the_worker(system: System) -> None:
    with Client(system.api_url) as client:
        parent = client.enqueue(worker_jobs.boom.call("no"))
        on_success = client.continue_with(parent, worker_jobs.add.call(1, 1))
        on_finish = client.continue_with(parent, worker_jobs.add.call(2, 2), on="finished")
        chained = client.continue_with(on_finish, worker_jobs.add.call(3, 3))
        assert client.wait(chained, timeout=20) == 6
        assert client.wait(on_finish, timeout=5) == 4
        assert client.get(on_success)["state"] == "Awaiting"
        made = client.batch(
            [worker_jobs.add.call(i, 1) for i in range(5)] + [worker_jobs.boom.call("x")],
            on_complete=worker_jobs.add.call(10, 10),
        )
        assert client.wait(made["continuation_id"], timeout=20) == 20
        progress = client.get_batch(made["id"])
        assert (progress["succeeded"], progress["failed"], progress["state"]) == (5, 1, "completed")
