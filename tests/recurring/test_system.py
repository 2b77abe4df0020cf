"""Recurring jobs on real processes: API, worker and one or two schedulers (PostgreSQL)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from orchestrator import Client
from orchestrator.db import create_engine
from tests import worker_jobs
from tests.support.system import System

pytestmark = pytest.mark.e2e
EVERY_SECOND = "*/1 * * * * *"


@pytest.fixture
def system(postgres_url: str, amqp_url: str, tmp_path: Path) -> Iterator[System]:
    running = System(
        database_url=postgres_url, jobs="tests.worker_jobs", amqp_url=amqp_url, log_dir=tmp_path
    )
    try:
        running.start("api", "api")
        running.start("worker", "worker", "--concurrency", "8")
        running.wait_for_api()
        running.wait_for_catalog("tests.add")
        yield running
    finally:
        running.stop_all()


async def _runs(url: str, recurring_id: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            query = sa.text(
                "SELECT j.scheduled_for, j.state, min(h.at) FILTER (WHERE h.state = 'Processing')"
                " AS started FROM jobs j JOIN job_history h ON h.job_id = j.id"
                " WHERE j.recurring_id = :rid GROUP BY j.id ORDER BY j.scheduled_for"
            )
            return list((await conn.execute(query, {"rid": recurring_id})).all())
    finally:
        await engine.dispose()


def wait_for_schedulers(system: System, count: int, timeout: float = 60) -> None:
    """Until ``count`` schedulers announced themselves, so the clock starts with them running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = httpx.get(f"{system.api_url}/api/v1/servers", timeout=5).json()["items"]
        if sum(1 for item in items if item["role"] == "scheduler") >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} schedulers started")


def run_for(system: System, seconds: float) -> list[Any]:
    with Client(system.api_url) as client:
        client.add_or_update("tick", worker_jobs.add.call(1, 1), EVERY_SECOND)
        time.sleep(seconds)
        client.pause("tick")
        time.sleep(1.5)  # let the last runs finish
        assert client.get_recurring("tick")["error"] is None
    return asyncio.run(_runs(system.database_url, "tick"))


def assert_one_run_per_second(runs: list[Any], at_least: int) -> None:
    times: list[datetime] = [r.scheduled_for for r in runs]
    assert len(runs) >= at_least, runs
    assert len(set(times)) == len(times)
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(times))
    assert all(t.microsecond == 0 for t in times)
    assert {r.state for r in runs} == {"Succeeded"}
    assert all(r.started >= r.scheduled_for for r in runs)


def test_every_second_schedule_runs_once_per_occurrence(system: System) -> None:
    system.start("scheduler", "scheduler")
    wait_for_schedulers(system, 1)
    runs = run_for(system, 5.0)
    assert_one_run_per_second(runs, at_least=3)
    late = [(r.started - r.scheduled_for).total_seconds() for r in runs]
    # The first occurrences may wait for the scheduler to start; once running it is on time.
    assert max(late[-2:]) < 0.5, late


def test_two_schedulers_produce_one_job_per_occurrence(system: System) -> None:
    system.start("scheduler-a", "scheduler")
    system.start("scheduler-b", "scheduler")
    wait_for_schedulers(system, 2)
    runs = run_for(system, 6.0)
    assert_one_run_per_second(runs, at_least=4)
    for name in ("scheduler-a", "scheduler-b"):
        assert "Traceback" not in system.log_of(name), system.log_of(name)
