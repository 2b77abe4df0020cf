"""Each metric added with the operations issue moves when its event happens (real RabbitMQ and
stores): retries, deletes by job, scheduler lateness, queue depth and consumers, heartbeat age."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, recurring, servers, store
from orchestrator.broker import connect
from orchestrator.catalog import Catalog
from orchestrator.lifecycle import State
from orchestrator.outbox import OutboxSender
from orchestrator.store import registrations
from orchestrator.topology import Topology, declare_base, declare_work_queue
from orchestrator_scheduler.gauges import SystemGauges
from orchestrator_scheduler.promotion import Promoter
from orchestrator_scheduler.recurring import fire_due
from tests import jobs_for_tests as jobs
from tests.retries.conftest import enqueue, new_job, start_worker, wait_for  # noqa: F401
from tests.test_client_api import Running, api  # noqa: F401

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def series(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of a metric now, by its labels."""
    found = {}
    for family in REGISTRY.collect():
        for item in family.samples:
            if item.name == name:
                found[tuple(sorted(item.labels.items()))] = item.value
    return found


async def until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.05)


async def test_a_retried_failure_counts_as_failed_and_retried(
    start_worker: Any,  # noqa: F811
    postgres_url: str,
) -> None:
    labels = {"queue": "default", "job_name": "retry.always"}
    retried = sample("orchestrator_jobs_retried_total", **labels)
    failed = sample("orchestrator_jobs_failed_total", **labels)
    settings = await start_worker(postgres_url)
    [job_id] = await enqueue(settings, [new_job("retry.always", "kaput", retries=1)])
    await wait_for(settings, job_id, {"Failed"})
    await until(
        lambda: sample("orchestrator_jobs_failed_total", **labels) == failed + 2, "two failures"
    )
    # The first failure was retried, the last (no retry left) was not.
    assert sample("orchestrator_jobs_retried_total", **labels) == retried + 1


async def test_delete_counts_by_queue_and_job(api: Running) -> None:  # noqa: F811
    labels = {"queue": "default", "job_name": "tests.jobs_for_tests.echo"}
    before = sample("orchestrator_jobs_deleted_total", **labels)
    job_id = await api.client.enqueue(jobs.echo.call("x"))
    await api.client.delete(job_id)
    await api.client.delete(job_id)  # already Deleted: not counted again
    assert sample("orchestrator_jobs_deleted_total", **labels) == before + 1


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    async def __call__(self, _conn: Any) -> datetime:
        return self.now


@pytest.fixture
async def sender(engine: AsyncEngine) -> AsyncIterator[OutboxSender]:
    running = OutboxSender(engine, None)
    running.start()
    yield running
    await running.stop()


def lateness(kind: str) -> tuple[float, float]:
    """(count, sum) of the lateness histogram for ``kind``."""
    return (
        sample("orchestrator_scheduler_lateness_seconds_count", kind=kind),
        sample("orchestrator_scheduler_lateness_seconds_sum", kind=kind),
    )


async def test_promotion_observes_how_late_each_job_was(
    engine: AsyncEngine, sender: OutboxSender
) -> None:
    scheduled = [
        store.NewJob(
            name="x", queue="default", args=[], kwargs={}, state=State.SCHEDULED,
            due_at=T0, scheduled_reason=reason,
        )
        for reason in ("delay", "delay", "retry")
    ]  # fmt: skip
    async with engine.begin() as conn:
        await store.create_jobs(conn, scheduled, T0 - timedelta(hours=1))
    delayed, retry = lateness("delayed"), lateness("retry")
    clock = Clock(T0 + timedelta(seconds=2.5))
    transitions = composition.transitions(timedelta(hours=1))
    promoter = Promoter(engine, sender, transitions, clock=clock, retry_grace=2)
    await promoter.step()
    assert promoter.promoted == 3
    assert lateness("delayed") == pytest.approx((delayed[0] + 2, delayed[1] + 5.0))
    assert lateness("retry") == pytest.approx((retry[0] + 1, retry[1] + 2.5))
    await promoter.step()  # nothing left due: nothing observed
    assert lateness("delayed")[0] == delayed[0] + 2


async def test_recurring_runs_observe_how_late_they_were_created(engine: AsyncEngine) -> None:
    at = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    async with engine.begin() as conn:
        await registrations.save(
            conn, Catalog.from_modules(["tests.jobs_for_tests"]).registrations(), at
        )
        definition = recurring.Definition(
            id="r1", job="tests.jobs_for_tests.add", cron="* * * * *", args=[1, 2]
        )
        await recurring.save(conn, definition, at)
    before = lateness("recurring")
    async with engine.begin() as conn:  # the 12:01 occurrence, fired 3 s late
        assert (await fire_due(conn, at + timedelta(minutes=1, seconds=3))).runs == 1
    assert lateness("recurring") == pytest.approx((before[0] + 1, before[1] + 3.0))


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    connection = await connect(amqp_url, name="test-gauges")
    yield connection
    await connection.close()


async def test_the_lease_holder_reports_queue_depth_consumers_and_heartbeat_ages(
    namespace: str, engine: AsyncEngine, broker: AbstractRobustConnection
) -> None:
    topology = Topology(namespace)
    channel = await broker.channel()
    await declare_base(channel, topology)
    work_queue = await declare_work_queue(channel, topology, "default")
    for n in range(3):
        await channel.default_exchange.publish(
            aio_pika.Message(str(n).encode()), routing_key=topology.work_queue("default").name
        )
    # "never-declared" is consumed by a registered worker but does not exist in RabbitMQ.
    worker = servers.ServerInfo(role="worker", queues=["default", "never-declared"])
    await servers.announce(engine, worker)
    leader = True
    gauges = SystemGauges(engine, topology, lambda: broker, lambda: leader, interval=1.0)

    await gauges.tick()
    assert series("orchestrator_queue_depth") == {
        (("queue", "default"),): 3.0,
        (("queue", "never-declared"),): 0.0,
    }
    assert series("orchestrator_queue_consumers")[(("queue", "default"),)] == 0.0
    ages = series("orchestrator_server_heartbeat_age_seconds")
    assert list(ages) == [(("role", "worker"), ("server", worker.id))]
    assert 0.0 <= ages[(("role", "worker"), ("server", worker.id))] < 60

    async def take(message: AbstractIncomingMessage) -> None:
        await message.ack()

    await work_queue.consume(take)
    await gauges.tick()
    assert series("orchestrator_queue_consumers")[(("queue", "default"),)] == 1.0

    await servers.withdraw(engine, worker)
    await gauges.tick()  # the withdrawn server's series is gone with it
    assert series("orchestrator_server_heartbeat_age_seconds") == {}

    leader = False  # lost the lease: no series at all, not the last sample
    await gauges.tick()
    assert series("orchestrator_queue_depth") == {}
    assert series("orchestrator_queue_consumers") == {}


async def test_no_queue_series_while_the_broker_is_unreachable(engine: AsyncEngine) -> None:
    await servers.announce(engine, servers.ServerInfo(role="worker", queues=["default"]))
    topology = Topology(f"t{uuid.uuid4().hex[:8]}")
    gauges = SystemGauges(engine, topology, lambda: None, lambda: True, interval=1.0)
    await gauges.tick()
    assert series("orchestrator_queue_depth") == {}
    assert len(series("orchestrator_server_heartbeat_age_seconds")) == 1
