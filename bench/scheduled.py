"""Promotion at scale: 1,000,000 Scheduled jobs in PostgreSQL, of which ``--due`` are due.

The jobs are inserted with one ``INSERT ... SELECT generate_series`` (not through the API). The
promoter (the scheduler's own code, with the outbox fast path but no broker) then promotes the
due ones in indexed batches; prints the promotion rate and how long one idle step takes with a
million jobs waiting.

Run: ``.venv/bin/python -m bench.scheduled [--total 1000000] [--due 100000]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import timedelta

import sqlalchemy as sa

from orchestrator import composition
from orchestrator.db import create_engine
from orchestrator.outbox import OutboxSender
from orchestrator_scheduler.promotion import Promoter
from tests.support.system import drop_postgres_database, new_postgres_database

INSERT = """
INSERT INTO jobs (id, name, queue, args, kwargs, state, scheduled_reason, due_at, attempt,
                  retries, retries_used, created_at, state_changed_at, options)
SELECT gen_random_uuid(), 'tests.noop', 'bench', '[]', '{}', 'Scheduled', 'delay',
       CASE WHEN g <= :due THEN now() - interval '1 second' * (g % 60)
            ELSE now() + interval '1 hour' + interval '1 second' * g END,
       0, 0, 0, now(), now(), '{}'
FROM generate_series(1, :total) AS g
"""


async def run(url: str, total: int, due: int) -> None:
    engine = create_engine(url)
    try:
        started = time.perf_counter()
        async with engine.begin() as conn:
            await conn.execute(sa.text(INSERT), {"total": total, "due": due})
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("VACUUM ANALYZE jobs"))
        print(f"inserted {total} scheduled jobs in {time.perf_counter() - started:.1f} s")
        sender = OutboxSender(engine, None)
        transitions = composition.transitions(timedelta(days=1))
        promoter = Promoter(engine, sender, transitions, batch=1000)
        started = time.perf_counter()
        while await promoter.step() == 0.0:
            pass
        elapsed = time.perf_counter() - started
        print(
            f"promoted {promoter.promoted} due jobs in {elapsed:.2f} s "
            f"({promoter.promoted / elapsed:,.0f} jobs/s, batches of {promoter.batch})"
        )
        samples = []
        for _ in range(20):
            began = time.perf_counter()
            await promoter.step()
            samples.append(time.perf_counter() - began)
        samples.sort()
        print(
            f"idle step with {total - due} jobs waiting: median "
            f"{samples[len(samples) // 2] * 1000:.2f} ms, max {samples[-1] * 1000:.2f} ms"
        )
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scheduled", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--total",
        type=int,
        default=1_000_000,
        help="Scheduled jobs inserted (default: %(default)s)",
    )
    parser.add_argument(
        "--due",
        type=int,
        default=100_000,
        help="how many of them are already due and get promoted (default: %(default)s)",
    )
    args = parser.parse_args()
    name, url = new_postgres_database()
    try:
        asyncio.run(run(url, args.total, args.due))
    finally:
        drop_postgres_database(name)


if __name__ == "__main__":
    main()
