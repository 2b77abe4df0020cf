"""Recurring jobs: run lateness on real processes, and the idle scheduler's cost with many
definitions.

    .venv/bin/python -m bench.recurring lateness --seconds 30
    .venv/bin/python -m bench.recurring idle --definitions 10000 --seconds 20

``lateness`` starts API, worker and scheduler on a fresh PostgreSQL database, adds recurring jobs
that run every second, and reports start - scheduled_for from each run's history. ``idle`` fills
a fresh database with definitions none of which is due, runs the scheduler's recurring loop in
this process, and reports its CPU time per minute and the SQL statements each tick sends.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy import event

from orchestrator.db import create_engine
from orchestrator.models import RecurringJob
from orchestrator_scheduler.recurring import MAX_SLEEP, RecurringLoop
from tests.support.system import System, drop_postgres_database, new_postgres_database

LATENESS_SQL = """
SELECT extract(epoch FROM h.at - j.scheduled_for),
       extract(epoch FROM j.created_at - j.scheduled_for)
FROM jobs j JOIN job_history h ON h.job_id = j.id AND h.state = 'Processing'
WHERE j.recurring_id IS NOT NULL
"""


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def lateness(seconds: float, definitions: int) -> None:
    name, url = new_postgres_database()
    system = System(database_url=url, jobs="bench.jobs")
    try:
        system.start("api", "api")
        system.start("worker", "worker", "--concurrency", "32")
        system.start("scheduler", "scheduler")
        system.wait_for_api()
        system.wait_for_catalog("bench.noop")
        time.sleep(2)  # the scheduler is up before the first occurrence
        for i in range(definitions):
            body = {"job": "bench.noop", "cron": "*/1 * * * * *"}
            answer = httpx.put(f"{system.api_url}/api/v1/recurring/r{i}", json=body, timeout=10)
            answer.raise_for_status()
        time.sleep(seconds)
        for i in range(definitions):
            httpx.post(f"{system.api_url}/api/v1/recurring/r{i}/pause", timeout=10)
        time.sleep(2)
        late, created = asyncio.run(_lateness(url))
    finally:
        system.stop_all()
        drop_postgres_database(name)
    print(f"{len(late)} runs of {definitions} definitions every second for {seconds:.0f} s")
    for label, values in (("start - scheduled_for", late), ("created - scheduled_for", created)):
        ms = [value * 1000 for value in values]
        print(
            f"  {label}: p50 {statistics.median(ms):.1f} ms, "
            f"p99 {_percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms"
        )


async def _lateness(url: str) -> tuple[list[float], list[float]]:
    """Per run: start - scheduled_for, and created - scheduled_for (the scheduler's share)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text(LATENESS_SQL))).all()
            return [float(r[0]) for r in rows], [float(r[1]) for r in rows]
    finally:
        await engine.dispose()


async def _fill(url: str, count: int) -> None:
    engine = create_engine(url)
    now = datetime.now(UTC)
    rows = [
        {
            "id": f"def-{i}",
            "name": "bench.noop",
            "args": [],
            "kwargs": {},
            "cron": "0 3 * * *",
            "timezone": "UTC",
            "queue": None,
            "options": {},
            "misfire": "relaxed",
            "overlap": "allow",
            "paused": i % 10 == 0,
            "next_run_at": now + timedelta(hours=1, seconds=i),
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(RecurringJob.__table__), rows)  # type: ignore[attr-defined]
            await conn.execute(sa.text("ANALYZE recurring_jobs"))
    finally:
        await engine.dispose()


async def _idle(url: str, seconds: float) -> tuple[float, int, int, str]:
    engine = create_engine(url)
    statements: list[str] = []
    event.listen(
        engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: statements.append(statement),
    )

    async def no_broker() -> None:
        return None

    loop = RecurringLoop(engine, no_broker)
    ticks = 0
    cpu_before = time.process_time()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not await loop.tick():
                await asyncio.sleep(MAX_SLEEP)
            ticks += 1
        cpu = time.process_time() - cpu_before
        async with engine.connect() as conn:
            plan = "\n".join((await conn.execute(sa.text(f"EXPLAIN {_peek_sql()}"))).scalars())
    finally:
        await engine.dispose()
    return cpu, ticks, len(statements), plan


def _peek_sql() -> str:
    return (
        "SELECT clock_timestamp(), (SELECT min(next_run_at) FROM recurring_jobs "
        "WHERE paused = false)"
    )


def idle(definitions: int, seconds: float) -> None:
    name, url = new_postgres_database()
    try:
        asyncio.run(_fill(url, definitions))
        cpu, ticks, statements, plan = asyncio.run(_idle(url, seconds))
    finally:
        drop_postgres_database(name)
    print(
        f"idle recurring loop, {definitions} definitions: {cpu / seconds * 60:.2f} s CPU per "
        f"minute, {ticks} ticks in {seconds:.0f} s, {statements / max(ticks, 1):.1f} statements "
        f"per tick\nplan of the per-tick query:\n{plan}"
    )


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.recurring",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{lateness,idle}")
    late = sub.add_parser(
        "lateness", help="start - scheduled_for of recurring runs on real processes"
    )
    late.add_argument(
        "--seconds",
        type=float,
        default=30,
        help="how long the definitions run (default: %(default)s)",
    )
    late.add_argument(
        "--definitions",
        type=int,
        default=5,
        help="recurring jobs, each every second (default: %(default)s)",
    )
    quiet = sub.add_parser("idle", help="the idle recurring loop's CPU and SQL per tick")
    quiet.add_argument(
        "--definitions",
        type=int,
        default=10_000,
        help="definitions in the store, none of them due (default: %(default)s)",
    )
    quiet.add_argument(
        "--seconds",
        type=float,
        default=20,
        help="how long the loop is measured (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.command == "lateness":
        lateness(args.seconds, args.definitions)
    else:
        idle(args.definitions, args.seconds)


if __name__ == "__main__":
    main()
