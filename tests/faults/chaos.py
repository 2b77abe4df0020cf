"""A seeded chaos run: a whole system of real processes under mixed load while one random fault
after another hits it (issue 10, point 6).

On PostgreSQL: 1 API, 3 workers, 2 schedulers and 1 janitor started through the CLI
(``tests.support.system``), short leases with matching heartbeats. Client threads send mixed
load through the HTTP API (single jobs, jobs with an idempotency key sent twice, bulk requests,
delayed jobs, continuations, jobs designed to fail, and a recurring job with a seconds-field
cron). Meanwhile, every few seconds, a seeded RNG picks one fault: kill -9 or SIGTERM of a
worker, of the scheduler holding the lease or of the API (:mod:`tests.faults.chaos_fleet`). A
killed or stopped process is replaced at once, so the system keeps its capacity. Clients retry
requests with their idempotency key while the API is down (and plain requests only when nothing
can have reached the server).

Everything observed is kept as plain records (what the clients were told, every process's life,
who held the scheduler lease when, when the API answered); :mod:`tests.faults.chaos_checks`
turns them and the store into the checks and the summary table.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx
import sqlalchemy as sa

from orchestrator.db import create_engine
from orchestrator.store import jobs_table
from tests.faults.chaos_clients import JOB, RETRY_FOR, ApiClient, Ledger, LoadClient
from tests.faults.chaos_fleet import Fleet, Injector, Watcher, api_ready
from tests.support.system import System

FINAL = ("Succeeded", "Failed", "Deleted")


@dataclass(frozen=True)
class ChaosConfig:
    seed: int
    #: Seconds of load (and faults); then the system settles with no more faults.
    load_seconds: float = 50.0
    #: Upper bound on the settling (every job final); a run that needs longer has stuck jobs.
    settle_seconds: float = 150.0
    workers: int = 3
    concurrency: int = 8
    schedulers: int = 2
    lease_seconds: float = 6.0
    heartbeat_seconds: float = 1.0
    shutdown_grace_seconds: float = 2.0
    #: Seconds between two faults (uniform in this range).
    fault_every: tuple[float, float] = (4.0, 8.0)
    #: Jobs per second the clients aim at, all together.
    rate: float = 40.0
    clients: int = 4
    #: Every 2 s: seconds field first.
    recurring_cron: str = "*/2 * * * * *"
    recurring_period: float = 2.0


# --------------------------------------------------------------------------------------------
# Reading the store and the broker


async def job_states(database_url: str) -> dict[str, str]:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.select(jobs_table.c.id, jobs_table.c.state))
            return {str(row.id): str(row.state) for row in rows}
    finally:
        await engine.dispose()


def wait_until_final(database_url: str, job_ids: set[str] | None, timeout: float) -> bool:
    """Until every job (of ``job_ids``, or every job in the store) is final; False at timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            states = asyncio.run(job_states(database_url))
            wanted = states.keys() if job_ids is None else job_ids
            if all(states.get(j) in FINAL for j in wanted):
                return True
        time.sleep(0.5)
    return False


class DeadQueueUnreadableError(Exception):
    """The dead-letter queue's depth could not be read: the check must not pass as 0."""


async def dead_queue_depth(
    amqp_url: str, namespace: str, *, attempts: int = 5, pause: float = 2.0
) -> int:
    """Messages in ``<namespace>.dead``, asked up to ``attempts`` times (the broker may be busy
    right after every role has stopped); then :class:`DeadQueueUnreadableError` naming the last
    error. The roles declare the queue, so a queue that is not there is an error too."""
    for attempt in range(1, attempts + 1):
        try:
            return await _dead_queue_depth(amqp_url, namespace)
        except Exception as exc:
            if attempt == attempts:
                raise DeadQueueUnreadableError(
                    f"{namespace}.dead: depth not readable after {attempts} attempts: {exc!r}"
                ) from exc
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")


async def dead_letters(amqp_url: str, namespace: str, most: int = 5) -> list[str]:
    """Up to ``most`` messages of ``<namespace>.dead`` (left there): each body with its
    ``x-death`` entries (queue, reason, count), for a failure's message."""
    connection = await aio_pika.connect(amqp_url, timeout=10)
    seen: list[str] = []
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{namespace}.dead", passive=True)
        for _ in range(most):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            deaths = [
                {key: death.get(key) for key in ("queue", "reason", "count")}
                for death in message.headers.get("x-death", []) or []
                if isinstance(death, dict)
            ]
            seen.append(f"{message.body.decode(errors='replace')} x-death {deaths}")
    finally:
        await connection.close()  # the messages got stay in the queue (never acked)
    return seen


async def _dead_queue_depth(amqp_url: str, namespace: str) -> int:
    connection = await aio_pika.connect(amqp_url, timeout=10)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{namespace}.dead", passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await connection.close()


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class Run:
    """What a chaos run leaves for the checks."""

    config: ChaosConfig
    system: System
    marks: Path
    fleet: Fleet
    ledger: Ledger
    injector: Injector
    watcher: Watcher
    recurring_id: str
    began: float = 0.0
    load_began: float = 0.0
    load_ended: float = 0.0
    settled_at: float = 0.0
    stopped_at: float = 0.0
    recurring_deleted: float = 0.0
    settled: bool = False
    dead_queue: int = 0
    #: Why the dead queue's depth could not be read (a violation), if it could not.
    dead_queue_error: str | None = None
    #: Whether a recurring run was scheduled after the faults stopped (the loop survived them).
    recurring_after_faults: bool = False


def start_fleet(fleet: Fleet, config: ChaosConfig) -> None:
    fleet.start("api", "api")
    for n in range(1, config.schedulers + 1):
        fleet.start(f"scheduler-{n}", "scheduler")
    for n in range(1, config.workers + 1):
        fleet.start(f"worker-{n}", "worker")
    fleet.start("janitor", "janitor")


def wait_ready(run: Run) -> None:
    """Until the API answers, every worker consumes and a scheduler holds the lease (for as
    long as the roles make progress: ``System.wait_until_ready``)."""

    def ready() -> bool:
        workers = run.fleet.alive("worker")
        return (
            run.watcher.leader() is not None
            and all(run.fleet.ready_worker(w) for w in workers)
            and api_ready(run.system.api_url)
        )

    names = [i.name for i in run.fleet.incarnations]
    run.system.wait_until_ready("every role of the chaos run", ready, names)


def put_recurring(run: Run) -> None:
    body = {
        "job": JOB,
        "args": [str(run.marks)],
        "kwargs": {"ms": 20, "tag": run.recurring_id},
        "cron": run.config.recurring_cron,
    }
    response = httpx.put(
        f"{run.system.api_url}/api/v1/recurring/{run.recurring_id}", json=body, timeout=20
    )
    assert response.status_code == 201, response.text


@contextlib.contextmanager
def threads(targets: list[Callable[[threading.Event], None]]) -> Iterator[threading.Event]:
    stop = threading.Event()
    started = [threading.Thread(target=t, args=(stop,), daemon=True) for t in targets]
    for thread in started:
        thread.start()
    try:
        yield stop
    finally:
        stop.set()
        for thread in started:
            thread.join(120)


def run_chaos(config: ChaosConfig, system: System, marks: Path) -> Run:
    """Start the system, load it under faults, let it settle, stop it; returns the records."""
    fleet = Fleet(system, config)
    ledger = Ledger()
    watcher = Watcher(system.database_url, system.api_url)
    run = Run(
        config, system, marks, fleet, ledger, Injector(config, fleet, watcher), watcher,
        recurring_id=f"chaos-{config.seed}",
    )  # fmt: skip
    watcher.start()
    run.began = time.time()
    try:
        start_fleet(fleet, config)
        wait_ready(run)
        put_recurring(run)
        _load(run)
        _settle(run)
    finally:
        run.settled_at = time.time()
        fleet.stop_all()
        run.stopped_at = time.time()
        watcher.close()
    try:
        run.dead_queue = asyncio.run(dead_queue_depth(system.amqp_url, system.namespace))
    except DeadQueueUnreadableError as exc:
        run.dead_queue_error = str(exc)
    return run


def _load(run: Run) -> None:
    clients = [ApiClient(run.system.api_url, run.ledger) for _ in range(run.config.clients)]
    loaders = [
        LoadClient(n, run.config, api, run.ledger, run.marks) for n, api in enumerate(clients)
    ]
    bursts = ApiClient(run.system.api_url, run.ledger)
    clients.append(bursts)
    burster = LoadClient(len(loaders), run.config, bursts, run.ledger, run.marks)
    run.injector.burst = lambda size: burster.bulk(size, keyed=True)
    run.load_began = time.time()
    try:
        with threads([run.injector.run, *(c.run for c in loaders)]) as stop:
            stop.wait(run.config.load_seconds)
    finally:
        run.load_ended = time.time()
        for api in clients:
            api.close()


def _settle(run: Run) -> None:
    """No more faults: every acknowledged job ends, the recurring job fires once more (it
    survived the faults) and is deleted, then every job in the store ends."""
    acked = {s.job_id for s in run.ledger.sent}
    budget = time.monotonic() + run.config.settle_seconds
    wait_until_final(run.system.database_url, acked, budget - time.monotonic())
    run.recurring_after_faults = _wait_recurring_after(run, run.load_ended, budget)
    # The last fault may have been the API's: its replacement may still be starting.
    deadline = time.monotonic() + RETRY_FOR
    while not api_ready(run.system.api_url) and time.monotonic() < deadline:
        time.sleep(0.5)
    httpx.delete(
        f"{run.system.api_url}/api/v1/recurring/{run.recurring_id}", timeout=20
    ).raise_for_status()
    run.recurring_deleted = time.time()
    # At least a while for the recurring job's last run, however long the API took.
    left = max(budget - time.monotonic(), 30.0)
    run.settled = wait_until_final(run.system.database_url, None, left)


def _wait_recurring_after(run: Run, after: float, budget: float) -> bool:
    async def latest() -> float | None:
        engine = create_engine(run.system.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                value = (
                    await conn.execute(
                        sa.select(sa.func.max(jobs_table.c.scheduled_for)).where(
                            jobs_table.c.recurring_id == run.recurring_id
                        )
                    )
                ).scalar()
                return value.timestamp() if value is not None else None
        finally:
            await engine.dispose()

    while time.monotonic() < budget:
        with contextlib.suppress(Exception):
            newest = asyncio.run(latest())
            if newest is not None and newest > after:
                return True
        time.sleep(0.5)
    return False
