"""End-to-end throughput and enqueue→start latency on PostgreSQL, with full state history.

    python -m bench.throughput [--jobs 20000] [--http-jobs 4000] [--rate 200] [--seconds 10]
                               [--workers 1] [--concurrency 256] [--json]

Starts an API, workers and a scheduler as real processes against RabbitMQ and a fresh
PostgreSQL database, then measures:

1. bulk: N no-op jobs enqueued through POST /api/v1/jobs/bulk, from the first request to the
   last job Succeeded (every job with its Enqueued, Processing and Succeeded history rows);
2. per-job HTTP enqueue: jobs posted one request each by concurrent clients;
3. latency (measured first, after a 2 s warm-up): jobs posted one by one at a steady rate;
   enqueue→start is the time between the job's Enqueued and Processing history rows (both
   stamped by the database clock).

It reports each step on stderr as it goes and prints a table at the end (``--json``: the same
figures as JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import aiohttp
import httpx
import sqlalchemy as sa

from bench.progress import Progress, print_table
from orchestrator.db import create_engine
from orchestrator.store import history_table, jobs_table
from tests.support.system import System, drop_postgres_database, new_postgres_database

NOOP = {"job": "bench.noop"}


async def count_state(url: str, state: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            query = sa.select(sa.func.count()).where(jobs_table.c.state == state)
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def wait_succeeded(
    url: str, expected: int, progress: Progress, before: int = 0, timeout: float = 600
) -> float:
    engine = create_engine(url)
    deadline = time.perf_counter() + timeout
    try:
        while True:
            async with engine.connect() as conn:
                query = sa.select(sa.func.count()).where(jobs_table.c.state == "Succeeded")
                done = int((await conn.execute(query)).scalar_one())
            progress.update(f"{done - before:,}/{expected - before:,} succeeded")
            if done >= expected:
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {done} of {expected} jobs succeeded")
            await asyncio.sleep(0.02)
    finally:
        await engine.dispose()


async def bulk(system: System, n: int, progress: Progress, chunk: int = 1000) -> dict[str, Any]:
    progress.phase(f"bulk: {n:,} jobs, {chunk:,} per request")
    before = await count_state(system.database_url, "Succeeded")
    async with httpx.AsyncClient(base_url=system.api_url, timeout=120) as client:
        started = time.perf_counter()

        async def post(size: int) -> None:
            response = await client.post("/api/v1/jobs/bulk", json={"jobs": [NOOP] * size})
            response.raise_for_status()
            posted.append(size)
            progress.update(f"{sum(posted):,}/{n:,} enqueued")

        posted: list[int] = []
        sizes = [min(chunk, n - i) for i in range(0, n, chunk)]
        semaphore = asyncio.Semaphore(2)

        async def limited(size: int) -> None:
            async with semaphore:
                await post(size)

        await asyncio.gather(*(limited(s) for s in sizes))
        enqueued = time.perf_counter()
    finished = await wait_succeeded(system.database_url, before + n, progress, before)
    return {
        "jobs": n,
        "enqueue_jobs_per_s": round(n / (enqueued - started)),
        "end_to_end_jobs_per_s": round(n / (finished - started)),
        "seconds": round(finished - started, 2),
    }


async def per_job(system: System, n: int, progress: Progress, clients: int = 32) -> dict[str, Any]:
    progress.phase(f"per-job HTTP: {n:,} jobs from {clients} clients")
    before = await count_state(system.database_url, "Succeeded")
    # aiohttp, not httpx, drives the load: on two shared cores the client's own cost per request
    # would otherwise be most of what is measured.
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(system.api_url, connector=connector) as session:
        remaining = iter(range(n))

        async def client_loop() -> None:
            for i in remaining:
                async with session.post("/api/v1/jobs", json=NOOP) as response:
                    assert response.status == 201, await response.text()
                progress.update(f"{i + 1:,}/{n:,} enqueued")

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(clients)))
        enqueued = time.perf_counter()
    finished = await wait_succeeded(system.database_url, before + n, progress, before)
    return {
        "jobs": n,
        "clients": clients,
        "http_enqueue_jobs_per_s": round(n / (enqueued - started)),
        "end_to_end_jobs_per_s": round(n / (finished - started)),
    }


async def latency(
    system: System, rate: float, seconds: float, progress: Progress, label: str = "latency"
) -> dict[str, Any]:
    n = int(rate * seconds)
    progress.phase(f"{label}: {n:,} jobs at {rate:g}/s, one request each")
    ids: list[uuid.UUID] = []
    async with aiohttp.ClientSession(system.api_url) as session:

        async def post() -> uuid.UUID:
            async with session.post("/api/v1/jobs", json=NOOP) as response:
                assert response.status == 201, await response.text()
                return uuid.UUID((await response.json())["id"])

        started = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post()))
            progress.update(f"{i + 1:,}/{n:,} posted")
        ids = list(await asyncio.gather(*tasks))
        achieved = n / (time.perf_counter() - started)
    before = await count_state(system.database_url, "Succeeded")
    await wait_succeeded(system.database_url, before, progress)
    waits = await _enqueue_to_start_ms(system.database_url, ids)
    return {
        "jobs": n,
        "target_rate": rate,
        "achieved_rate": round(achieved, 1),
        "p50_ms": round(statistics.median(waits), 2),
        "p99_ms": round(waits[int(len(waits) * 0.99) - 1], 2),
        "max_ms": round(waits[-1], 2),
    }


async def _enqueue_to_start_ms(url: str, ids: list[uuid.UUID]) -> list[float]:
    """Per job, Processing.at minus Enqueued.at from its history (both by the database clock)."""
    engine = create_engine(url)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(history_table.c.job_id, history_table.c.state, history_table.c.at).where(
                    history_table.c.job_id.in_(ids),
                    history_table.c.state.in_(["Enqueued", "Processing"]),
                )
            )
        ).all()
    await engine.dispose()
    enqueued_at: dict[Any, Any] = {}
    started_at: dict[Any, Any] = {}
    for job_id, state, at in rows:
        (enqueued_at if state == "Enqueued" else started_at).setdefault(job_id, at)
    return sorted((started_at[j] - enqueued_at[j]).total_seconds() * 1000 for j in started_at)


async def history_complete(url: str) -> bool:
    engine = create_engine(url)
    async with engine.connect() as conn:
        jobs = (await conn.execute(sa.select(sa.func.count()).select_from(jobs_table))).scalar()
        rows = (await conn.execute(sa.select(sa.func.count()).select_from(history_table))).scalar()
    await engine.dispose()
    return bool(rows == 3 * jobs)


def table_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    late, bulk_, http = results["latency"], results["bulk"], results["per_job_http"]
    return [
        ("latency", "jobs posted, one request each", f"{late['jobs']:,}"),
        (
            "",
            "rate asked / achieved (jobs/s)",
            f"{late['target_rate']:g} / {late['achieved_rate']:g}",
        ),
        ("", "enqueue→start p50 (ms)", f"{late['p50_ms']:.1f}"),
        ("", "enqueue→start p99 (ms)", f"{late['p99_ms']:.1f}"),
        ("", "enqueue→start max (ms)", f"{late['max_ms']:.1f}"),
        ("bulk", f"jobs, {bulk_['seconds']:.1f} s end to end", f"{bulk_['jobs']:,}"),
        ("", "enqueue (jobs/s)", f"{bulk_['enqueue_jobs_per_s']:,}"),
        ("", "end to end (jobs/s)", f"{bulk_['end_to_end_jobs_per_s']:,}"),
        ("per-job HTTP", f"jobs from {http['clients']} clients", f"{http['jobs']:,}"),
        ("", "enqueue (jobs/s)", f"{http['http_enqueue_jobs_per_s']:,}"),
        ("", "end to end (jobs/s)", f"{http['end_to_end_jobs_per_s']:,}"),
        ("history", "3 rows per job", "yes" if results["history_complete"] else "NO"),
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--jobs", type=int, default=20000, help="jobs in the bulk phase (default: %(default)s)"
    )
    parser.add_argument(
        "--http-jobs",
        type=int,
        default=4000,
        help="jobs in the per-job HTTP phase, one request each (default: %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=200,
        help="jobs per second posted in the latency phase (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=10,
        help="how long the latency phase posts, after a 2 s warm-up (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (default: %(default)s)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=256,
        help="jobs each worker runs at once (default: %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the figures as JSON instead of a table"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    progress = Progress()
    progress.phase("creating and migrating a PostgreSQL database")
    db_name, url = new_postgres_database()
    system = System(database_url=url, jobs="bench.jobs")
    try:
        progress.phase(f"starting the API, {args.workers} worker(s) and the scheduler")
        system.start("api", "api")
        for i in range(args.workers):
            system.start(f"worker{i}", "worker", "--concurrency", str(args.concurrency))
        system.start("scheduler", "scheduler")
        system.wait_for_api()
        system.wait_for_catalog("bench.noop")
        # Latency first, on a warmed-up but otherwise idle system: the throughput phases leave
        # autovacuum and broker work behind that would be measured as latency otherwise.
        asyncio.run(latency(system, args.rate, 2.0, progress, label="warm-up"))
        results = {
            "latency": asyncio.run(latency(system, args.rate, args.seconds, progress)),
            "bulk": asyncio.run(bulk(system, args.jobs, progress)),
            "per_job_http": asyncio.run(per_job(system, args.http_jobs, progress)),
        }
        progress.phase("checking every job's history")
        results["history_complete"] = asyncio.run(history_complete(url))
        progress.phase("stopping the roles")
    finally:
        system.stop_all()
        drop_postgres_database(db_name)
    progress.done()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table("bench.throughput", ("phase", "measure", "value"), table_rows(results))


if __name__ == "__main__":
    main()
