"""No hand-back counts towards the quorum delivery limit: overload never dead-letters a job, and
``orchestrator_deliveries_returned_total`` counts every return (issue 10, point 2).

Two variants, both with work queues declared with a tiny delivery limit, so a message RabbitMQ
got back more than that many times would be dead-lettered at once:

- **short** (``make test``): an in-process worker with few slots faces many times more ready
  jobs than it has slots in two queues, while a second one starts and stops gracefully over and
  over (delivery limit 1). Every job succeeds, nothing is dead-lettered, and the metric's
  ``republished`` count equals the messages sent again, counted by a spy queue of the test's
  own: every publication beyond the jobs' first and the hand-backs' (history).
- **long** (``make chaos``, or ``ORCHESTRATOR_OVERLOAD_LONG_SECONDS``): worker processes (and a
  scheduler, for the leases of killed ones) for minutes under at least 10x more ready jobs than
  slots, kept topped up, while workers are killed (``kill -9``) and stopped (SIGTERM) at random
  and replaced (delivery limit 2: a kill's requeue is a real return and counts; a message would
  need two of them to be dead-lettered). Nothing is dead-lettered, every job succeeds, no two
  attempts of a job overlap, and the workers' /metrics count returns, never more than the spy
  saw sent again.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import metrics, store
from orchestrator.settings import Settings
from orchestrator_worker.worker import Worker
from tests.faults.chaos import dead_letters, dead_queue_depth
from tests.faults.conftest import SystemFactory
from tests.faults.overlaps import overlapping
from tests.faults.overload import Spy, WorkerChurn, enqueue, ready_jobs, reenqueued, states
from tests.worker.test_worker import CATALOG

SLOTS = 3
JOBS = int(os.environ.get("ORCHESTRATOR_OVERLOAD_JOBS", "400"))
QUEUES = ["critical", "default"]
#: Batches of JOBS at most, until a delivery was handed back.
BATCHES = 3
#: Seconds of the long variant; unset: not run (``make chaos`` sets it).
LONG_SECONDS = float(os.environ.get("ORCHESTRATOR_OVERLOAD_LONG_SECONDS", "0"))


def _returned() -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in metrics.DELIVERIES_RETURNED.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                reason = sample.labels["reason"]
                counts[reason] = counts.get(reason, 0) + sample.value
    return counts


async def _start(settings: Settings) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    worker = Worker(settings, CATALOG, shutdown_grace=10)
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 60)
    return stop, task


def _seed(name: str) -> int:
    seed = int(os.environ.get(name, random.randrange(2**32)))
    print(f"{name}={seed}")
    return seed


async def test_overload_and_workers_coming_and_going_dead_letter_nothing(
    make_settings: Callable[..., Settings], postgres_url: str
) -> None:
    rng = random.Random(_seed("ORCHESTRATOR_OVERLOAD_SEED"))
    settings = make_settings(
        postgres_url,
        worker_ops_port=0,
        worker_concurrency=SLOTS,
        worker_queues=QUEUES,
        delivery_limit=1,
    )
    spy = Spy(settings, QUEUES)
    await spy.declare()
    before = _returned()
    stop, first = await _start(settings)
    ids: list[uuid.UUID] = []
    visits = 0
    try:
        # A batch of jobs at a time; another (at most BATCHES) while no delivery was handed
        # back yet: whether one arrives while no slot is free is up to timing.
        handed_back_any = False
        while len(ids) < BATCHES * JOBS and not handed_back_any:
            jobs = [
                store.NewJob(
                    name="tests.sleep", queue=rng.choice(QUEUES), args=[rng.uniform(0.01, 0.06)],
                    kwargs={},
                )
                for _ in range(JOBS)
            ]  # fmt: skip
            ids += await enqueue(settings, jobs)
            while not _all_ended(await states(settings)):
                # The queue still holds far more jobs than both workers have slots; a second
                # worker joins for a while and leaves again (its graceful stop).
                second_stop, second = await _start(settings)
                await asyncio.sleep(rng.uniform(0.2, 1.0))  # how long it stays: random
                second_stop.set()
                await asyncio.wait_for(second, 60)
                visits += 1
            handed_back_any = _returned().get("republished", 0) > before.get("republished", 0)
    finally:
        stop.set()
        await asyncio.wait_for(first, 60)

    returned = {k: v - before.get(k, 0) for k, v in _returned().items()}
    sent_again = await spy.count() - len(ids)
    handed_back = sum((await reenqueued(settings)).values())
    await spy.delete()
    print(
        f"overload: {len(ids)} jobs, {visits} visits of a second worker, returned {returned}, "
        f"messages sent again {sent_again} ({handed_back} of them hand-backs)"
    )
    assert await dead_queue_depth(settings.amqp_url, settings.broker_namespace) == 0
    assert await states(settings) == {"Succeeded": len(ids)}
    # Every message sent again is a counted return or a hand-back's (a moved job's) message.
    assert returned.get("republished", 0) == sent_again - handed_back
    assert returned.get("republished", 0) > 0  # overload did make the workers give some back


def _all_ended(counts: dict[str, int]) -> bool:
    return set(counts) <= {"Succeeded", "Failed"}


@pytest.mark.e2e
@pytest.mark.timeout(3600)
@pytest.mark.skipif(
    not LONG_SECONDS, reason="make chaos runs it (ORCHESTRATOR_OVERLOAD_LONG_SECONDS)"
)
def test_minutes_of_overload_with_workers_killed_and_stopped_dead_letter_nothing(
    make_system: SystemFactory,
    make_settings: Callable[..., Settings],
    postgres_url: str,
    amqp_url: str,
    tmp_path: Path,
) -> None:
    rng = random.Random(_seed("ORCHESTRATOR_OVERLOAD_LONG_SEED"))
    workers, concurrency = 3, 4
    slots = workers * concurrency
    marks = tmp_path / "marks"
    marks.mkdir()
    system = make_system(
        postgres_url,
        amqp_url,
        ORCHESTRATOR_DELIVERY_LIMIT="2",
        ORCHESTRATOR_LEASE_SECONDS="5",
        ORCHESTRATOR_HEARTBEAT_SECONDS="1",
        ORCHESTRATOR_WORKER_SHUTDOWN_GRACE_SECONDS="2",
        ORCHESTRATOR_WORKER_LOST_LIMIT="50",
    )
    settings = make_settings(postgres_url, broker_namespace=system.namespace, delivery_limit=2)
    spy = Spy(settings, QUEUES)
    asyncio.run(spy.declare())
    system.start("scheduler", "scheduler")
    churn = WorkerChurn(system, concurrency, QUEUES)
    for _ in range(workers):
        churn.start()
    system.wait_until_ready(
        "every worker consuming",
        lambda: len(churn.ready()) == workers,
        [w.name for w in churn.live()],
    )

    ids: list[uuid.UUID] = []
    depths: list[int] = []
    stop = threading.Event()

    def feed() -> None:
        # At least 10x the slots ready at all times: topped up to 40x whenever below 30x, a
        # margin that lets workers draining ~200 jobs/s between two looks not empty it.
        while not stop.is_set():
            ready = asyncio.run(ready_jobs(settings, QUEUES))
            depths.append(ready)
            if ready < 30 * slots:
                new = [
                    store.NewJob(
                        name="faults.marked",
                        queue=rng.choice(QUEUES),
                        args=[str(marks)],
                        kwargs={"seconds": rng.choice([0.0, 0.01, 0.03, 0.06])},
                    )
                    for _ in range(40 * slots - ready)
                ]
                ids.extend(asyncio.run(enqueue(settings, new)))
            stop.wait(0.25)

    def come_and_go() -> None:
        # Every 5-10 s a worker is killed or stopped and replaced at once; at least one other
        # keeps consuming while replacements start.
        while not stop.wait(rng.uniform(5.0, 10.0)):
            churn.scrape()
            ready = churn.ready()
            if len(ready) < 2:
                continue
            victim = rng.choice(ready)
            if rng.random() < 0.5:
                churn.kill(victim)
            else:
                churn.terminate(victim)
            churn.start()

    threads = [threading.Thread(target=t, daemon=True) for t in (feed, come_and_go)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    stop.wait(LONG_SECONDS)
    stop.set()
    for thread in threads:
        thread.join(120)
    loaded = time.monotonic() - began

    system.wait_until_ready(
        "every job ended",
        lambda: _all_ended(asyncio.run(states(settings))),
        [*(w.name for w in churn.live()), "scheduler"],
    )
    churn.scrape()
    churn.stop_all()
    system.stop("scheduler")

    counted = churn.returned()
    sent_again = asyncio.run(spy.count()) - len(ids)
    moved = asyncio.run(reenqueued(settings))
    asyncio.run(spy.delete())
    dead = asyncio.run(dead_queue_depth(settings.amqp_url, settings.broker_namespace))
    overlaps = overlapping(marks, [str(i) for i in ids], churn.exits())
    final = asyncio.run(states(settings))
    print(
        f"overload (long): {loaded:.0f} s, {len(ids)} jobs, {slots} slots, ready jobs "
        f"min {min(depths)} median {statistics.median(depths):.0f} ({len(depths)} samples), "
        f"{churn.kills} kill -9, {churn.stops} SIGTERM, {len(churn.workers)} worker processes; "
        f"returns counted {dict(counted)}, messages sent again {sent_again} (re-enqueued "
        f"{dict(moved)}), dead-lettered {dead}, states {dict(final)}, overlaps {len(overlaps)}"
    )
    unsettled = churn.unsettled_at_close()
    print(f"overload (long): unsettled at close, from the workers' logs: {unsettled}")
    assert dead == 0, (
        asyncio.run(dead_letters(settings.amqp_url, settings.broker_namespace)),
        f"unsettled at close {unsettled}, kill -9 {churn.kills}",
    )
    assert final == {"Succeeded": len(ids)}
    assert not overlaps, overlaps[:5]
    assert churn.kills and churn.stops
    # The overload lasted: the median sample had at least 10x the slots ready.
    assert statistics.median(depths) >= 10 * slots
    # Returns were counted, and never more than were sent again (a killed worker's count is
    # lost with it, so only a bound holds across processes).
    assert 0 < counted["republished"] <= sent_again - sum(moved.values())
