"""Delayed-job lateness: (Processing.at - due_at) from the job history, on PostgreSQL.

Two scenarios on a real system (API, worker, scheduler processes):

- ``mixed``: 1,000 jobs with delays spread between 2 s and 60 s, enqueued longest first, one
  request each (every new job is due earlier than all before it: the wake-up path);
- ``same``: 1,000 jobs all due at the same instant, created in one bulk request.

Run: ``.venv/bin/python -m bench.lateness [--jobs 1000] [--max-delay 60]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from orchestrator.db import create_engine
from tests.support.system import System, drop_postgres_database, new_postgres_database

NOOP = "tests.noop"


def _mixed(client: httpx.Client, jobs: int, max_delay: float) -> list[str]:
    ids = []
    for k in range(jobs):  # longest delay first
        delay = max_delay - (max_delay - 2.0) * k / max(jobs - 1, 1)
        body = {"job": NOOP, "delay_seconds": delay}
        ids.append(client.post("/api/v1/jobs", json=body).raise_for_status().json()["id"])
    return ids


def _same(client: httpx.Client, jobs: int) -> list[str]:
    run_at = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    body = {"jobs": [{"job": NOOP, "run_at": run_at} for _ in range(jobs)]}
    return list(client.post("/api/v1/jobs/bulk", json=body).raise_for_status().json()["ids"])


async def _lateness(url: str, ids: list[str], timeout: float) -> list[float]:
    engine = create_engine(url)
    query = sa.text(
        "SELECT e.data->>'due_at' AS due, p.at FROM job_history e "
        "JOIN job_history p ON p.job_id = e.job_id AND p.state = 'Processing' "
        "WHERE e.state = 'Enqueued' AND e.reason = 'Due' AND e.job_id = ANY(CAST(:ids AS uuid[]))"
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            async with engine.connect() as conn:
                rows = (await conn.execute(query, {"ids": ids})).all()
            if len(rows) >= len(ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
    finally:
        await engine.dispose()
    return [(row.at - datetime.fromisoformat(row.due)).total_seconds() for row in rows]


def report(name: str, late: list[float], expected: int) -> None:
    late.sort()
    p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
    print(
        f"{name}: {len(late)}/{expected} jobs  p50 {statistics.median(late) * 1000:.1f} ms  "
        f"p99 {p99 * 1000:.1f} ms  max {late[-1] * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lateness", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--jobs", type=int, default=1000, help="jobs in each scenario (default: %(default)s)"
    )
    parser.add_argument(
        "--max-delay",
        type=float,
        default=60.0,
        help="longest delay in seconds of the mixed scenario, which spreads its jobs from 2 s "
        "to this (default: %(default)s)",
    )
    args = parser.parse_args()
    name, url = new_postgres_database()
    system = System(database_url=url, jobs="tests.worker_jobs")
    try:
        system.start("api", "api")
        system.start("worker", "worker", "--concurrency", "64")
        system.start("scheduler", "scheduler")
        system.wait_for_api()
        system.wait_for_catalog(NOOP)
        time.sleep(3)  # the scheduler holds its lease
        with httpx.Client(base_url=system.api_url, timeout=30) as client:
            mixed = _mixed(client, args.jobs, args.max_delay)
            late = asyncio.run(_lateness(url, mixed, args.max_delay + 30))
            report(f"mixed delays 2-{args.max_delay:g} s, longest first", late, len(mixed))
            same = _same(client, args.jobs)
            late = asyncio.run(_lateness(url, same, 40))
            report("all due in the same second", late, len(same))
    finally:
        system.stop_all()
        drop_postgres_database(name)


if __name__ == "__main__":
    main()
