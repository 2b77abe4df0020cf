"""No hand-back counts towards the quorum delivery limit: overload never dead-letters a job.

Work queues are declared with a delivery limit of 1, so a message RabbitMQ gets back twice is
dead-lettered at once. A worker with few slots faces many times more ready jobs than it has
slots in two queues, while a second worker starts and stops (SIGTERM-like, gracefully) over and
over. Every job must succeed, nothing may reach the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Callable

import aio_pika
import sqlalchemy as sa

from orchestrator import metrics, outbox, store
from orchestrator.broker import Publisher, connect
from orchestrator.db import create_engine, db_now
from orchestrator.settings import Settings
from orchestrator.topology import Topology
from orchestrator_worker.worker import Worker
from tests.worker.test_worker import CATALOG

SLOTS = 3
JOBS = int(os.environ.get("ORCHESTRATOR_OVERLOAD_JOBS", "400"))
QUEUES = ["critical", "default"]


async def _enqueue(settings: Settings, calls: list[tuple[str, float, str]]) -> list[uuid.UUID]:
    new = [store.NewJob(name=n, queue=q, args=[s], kwargs={}) for n, s, q in calls]
    engine = create_engine(settings.database_url)
    connection = await connect(settings.amqp_url, name="overload-enqueue")
    try:
        async with engine.begin() as conn:
            pending = await store.create_jobs(conn, new, await db_now(conn))
        topology = Topology(settings.broker_namespace, settings.delivery_limit)
        publisher = Publisher(connection, topology, settings.publish_timeout_seconds)
        async with engine.begin() as conn:
            await outbox.publish_pending(conn, publisher, pending)
        return [job.id for job in new]
    finally:
        await connection.close()
        await engine.dispose()


async def _dead_letters(settings: Settings) -> int:
    connection = await connect(settings.amqp_url, name="dead-letter-count")
    try:
        channel = await connection.channel()
        topology = Topology(settings.broker_namespace)
        try:
            queue = await channel.declare_queue(topology.dead_letter_queue.name, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return 0  # never declared: nothing was dead-lettered
        return int(queue.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def _unfinished(settings: Settings, ids: list[uuid.UUID]) -> dict[str, int]:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            table = store.jobs_table
            rows = await conn.execute(
                sa.select(table.c.state, sa.func.count())
                .where(table.c.id.in_(ids))
                .group_by(table.c.state)
            )
            return {state: int(n) for state, n in rows}
    finally:
        await engine.dispose()


def _returned() -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in metrics.DELIVERIES_RETURNED.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                reason = sample.labels.get("reason", "no_slot")
                counts[reason] = counts.get(reason, 0) + sample.value
    return counts


async def _start(settings: Settings) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    worker = Worker(settings, CATALOG, shutdown_grace=10)
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 60)
    return stop, task


async def test_overload_and_workers_coming_and_going_dead_letter_nothing(
    make_settings: Callable[..., Settings], postgres_url: str
) -> None:
    seed = int(os.environ.get("ORCHESTRATOR_OVERLOAD_SEED", random.randrange(2**32)))
    print(f"overload seed {seed}")
    rng = random.Random(seed)
    settings = make_settings(
        postgres_url,
        worker_ops_port=0,
        worker_concurrency=SLOTS,
        worker_queues=QUEUES,
        delivery_limit=1,
    )
    before = _returned()
    stop, first = await _start(settings)
    calls = [("tests.sleep", rng.uniform(0.01, 0.06), rng.choice(QUEUES)) for _ in range(JOBS)]
    ids = await _enqueue(settings, calls)
    visits = 0
    try:
        while True:
            states = await _unfinished(settings, ids)
            if states.get("Succeeded", 0) + states.get("Failed", 0) == len(ids):
                break
            # The queue still holds far more jobs than both workers have slots; a second
            # worker joins for a while and leaves again (its graceful stop).
            assert await _dead_letters(settings) == 0, f"dead-lettered (seed {seed}): {states}"
            second_stop, second = await _start(settings)
            await asyncio.sleep(rng.uniform(0.2, 1.0))  # how long it stays: random
            second_stop.set()
            await asyncio.wait_for(second, 60)
            visits += 1
    finally:
        stop.set()
        await asyncio.wait_for(first, 60)

    returned = {k: v - before.get(k, 0) for k, v in _returned().items()}
    print(f"overload: {JOBS} jobs, {visits} visits of a second worker, returned {returned}")
    assert await _dead_letters(settings) == 0
    assert await _unfinished(settings, ids) == {"Succeeded": len(ids)}
