"""``orchestrator_deliveries_returned_total`` counts every return, and nothing else (issue 10,
point 2).

Deliveries a stopping worker never settled: RabbitMQ requeues every delivery still unacked
when a worker's connection closes, and counts each towards the quorum queue's delivery limit,
so the metric must count them too. Here the store goes away (a private PostgreSQL cluster,
stopped like a crash) while a worker holds deliveries it cannot claim: it keeps them unacked, as
it must, and is then stopped. Its claims cannot be written within the grace; when it closes its
connection RabbitMQ puts them back in the queue. The metric's ``unsettled_at_close`` count must
equal the messages that came back.

A delivery no slot could take is handed back by sending its job's message again; a stale copy
(its job no longer waits for a message) is only dropped, so it counts as a lost claim, not as
returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aio_pika

from orchestrator import composition, interventions, metrics, store
from orchestrator.broker import JobMessage, Publisher, connect
from orchestrator.db import create_engine, db_now
from orchestrator.settings import Settings
from orchestrator.topology import Topology
from orchestrator_worker.intake import Delivery
from orchestrator_worker.worker import Worker
from tests.faults.harness import PostgresCluster
from tests.faults.overload import Spy
from tests.worker.test_worker import CATALOG

JOBS = 3
SLOTS = 4


def _count(counter: object, **labels: str) -> float:
    return sum(
        sample.value
        for family in counter.collect()  # type: ignore[attr-defined]
        for sample in family.samples
        if sample.name.endswith("_total")
        and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def _unsettled_at_close() -> float:
    return _count(metrics.DELIVERIES_RETURNED, reason="unsettled_at_close")


async def _ready_messages(settings: Settings, queue: str) -> int:
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        name = Topology.of(settings).work_queue(queue).name
        declared = await channel.declare_queue(name, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def test_deliveries_held_when_the_worker_closes_are_counted_as_returned(
    make_settings: Callable[..., Settings], private_postgres: PostgresCluster
) -> None:
    settings = make_settings(
        private_postgres.url, worker_ops_port=0, worker_concurrency=SLOTS, lease_seconds=30
    )
    engine = create_engine(settings.database_url)
    jobs = [
        store.NewJob(name="tests.sleep", queue="default", args=[0.01], kwargs={})
        for _ in range(JOBS)
    ]
    async with engine.begin() as conn:
        pending = await store.create_jobs(conn, jobs, await db_now(conn))
    await engine.dispose()

    stop = asyncio.Event()
    worker = Worker(settings, CATALOG, shutdown_grace=2)
    running = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 120)
    before = _unsettled_at_close()

    # The store goes away; only then do the jobs' messages arrive.
    await asyncio.to_thread(private_postgres.stop, "immediate")
    connection = await connect(settings.amqp_url, name="unsettled-publisher")
    try:
        publisher = Publisher(connection, Topology.of(settings), settings.publish_timeout_seconds)
        assert await publisher.publish([p.message for p in pending]) == [True] * JOBS
    finally:
        await connection.close()
    # The worker takes them and holds them unacked (its claims fail while the store is away).
    async with asyncio.timeout(120):
        while worker.intake.unsettled < JOBS:
            await asyncio.sleep(0.05)
    left_in_queue = await _ready_messages(settings, "default")

    stop.set()
    await asyncio.wait_for(running, 120)

    requeued = await _ready_messages(settings, "default") - left_in_queue
    counted = _unsettled_at_close() - before
    print(f"held {JOBS}, requeued by RabbitMQ at close {requeued}, counted {counted:.0f}")
    assert requeued == JOBS
    assert counted == requeued


async def test_a_copy_no_slot_took_counts_as_returned_only_when_its_job_is_sent_again(
    make_settings: Callable[..., Settings], postgres_url: str
) -> None:
    settings = make_settings(postgres_url, worker_ops_port=0, worker_concurrency=2)
    engine = create_engine(settings.database_url)
    waiting, gone = (
        store.NewJob(name="tests.sleep", queue="default", args=[0.01], kwargs={}) for _ in "ab"
    )
    async with engine.begin() as conn:
        now = await db_now(conn)
        await store.create_jobs(conn, [waiting, gone], now)  # messages never sent
        transitions = composition.transitions(settings.job_retention)
        await interventions.delete_job(conn, transitions, gone.id, now, "gone")
    await engine.dispose()
    spy = Spy(settings, ["default"])
    await spy.declare()

    stop = asyncio.Event()
    worker = Worker(settings, CATALOG, shutdown_grace=2)
    running = asyncio.create_task(worker.run(stop))
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        await asyncio.wait_for(worker.ready.wait(), 120)
        # Two deliveries, as a consumer is sent them while no slot is free: the waiting job's
        # message and a stale copy of the deleted one's (from a queue of the test's own).
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        for job in (waiting, gone):
            body = JobMessage(job.id, "default").body()
            await channel.default_exchange.publish(aio_pika.Message(body), queue.name)
        taken = [await queue.get(no_ack=False, timeout=10) for _ in range(2)]
        returned = _count(metrics.DELIVERIES_RETURNED, reason="republished")
        lost = _count(metrics.CLAIMS_LOST, queue="default")
        for message in taken:
            assert message is not None
            worker.rounds.returns.submit(Delivery("default", message))  # the intake's give-back
        async with asyncio.timeout(60):
            while await spy.count() < 1:  # the waiting job's message, sent again
                await asyncio.sleep(0.05)
        assert _count(metrics.DELIVERIES_RETURNED, reason="republished") - returned == 1
        assert _count(metrics.CLAIMS_LOST, queue="default") - lost == 1
        assert await spy.count() == 1
    finally:
        stop.set()
        await asyncio.wait_for(running, 120)
        await connection.close()
        await spy.delete()
