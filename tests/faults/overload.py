"""What the overload tests (``test_delivery_limit.py``) need besides the system under test.

- :class:`Spy`: a queue of the test's own bound to the jobs exchange beside the work queues, so
  it receives a copy of every job message published (the originals and every message sent
  again); nobody consumes it, so its depth counts publications independently of the workers'
  own metrics.
- :func:`enqueue`: jobs created in the store and their messages published, as the API does.
- :func:`reenqueued`: the moves back to ``Enqueued`` (hand-backs, lease expiries) that sent a
  new message each.
- :class:`WorkerChurn`: worker processes started, killed (``kill -9``) and stopped (SIGTERM),
  with their exit times and the ``orchestrator_deliveries_returned_total`` each last showed on
  ``/metrics``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aio_pika
import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import outbox, store
from orchestrator.broker import Publisher, connect
from orchestrator.db import create_engine, db_now
from orchestrator.settings import Settings
from orchestrator.topology import Topology, declare_exchange
from tests.support.system import System, free_port


@dataclass
class Spy:
    settings: Settings
    queues: Sequence[str]
    name: str = field(default_factory=lambda: f"spy-{uuid.uuid4().hex[:10]}")

    async def declare(self) -> None:
        topology = Topology.of(self.settings)
        connection = await aio_pika.connect(self.settings.amqp_url)
        try:
            channel = await connection.channel()
            exchange = await declare_exchange(channel, topology.jobs_exchange)
            queue = await channel.declare_queue(self.name, durable=True)
            for name in self.queues:
                await queue.bind(exchange, name)
        finally:
            await connection.close()

    async def count(self) -> int:
        return await queue_depth(self.settings, self.name)

    async def delete(self) -> None:
        connection = await aio_pika.connect(self.settings.amqp_url)
        try:
            await (await connection.channel()).queue_delete(self.name)
        finally:
            await connection.close()


async def queue_depth(settings: Settings, name: str) -> int:
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(name, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def ready_jobs(settings: Settings, queues: Sequence[str]) -> int:
    """Ready messages in the work queues."""
    topology = Topology.of(settings)
    depths = [await queue_depth(settings, topology.work_queue(q).name) for q in queues]
    return sum(depths)


async def enqueue(settings: Settings, jobs: list[store.NewJob]) -> list[uuid.UUID]:
    """Create ``jobs`` and publish their messages (the API's enqueue, in bulk)."""
    engine = create_engine(settings.database_url)
    connection = await connect(settings.amqp_url, name="overload-enqueue")
    try:
        async with engine.begin() as conn:
            pending = await store.create_jobs(conn, jobs, await db_now(conn))
        publisher = Publisher(connection, Topology.of(settings), settings.publish_timeout_seconds)
        async with engine.begin() as conn:
            await outbox.publish_pending(conn, publisher, pending)
        return [job.id for job in jobs]
    finally:
        await connection.close()
        await engine.dispose()


async def states(settings: Settings) -> Counter[str]:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            table = store.jobs_table
            rows = await conn.execute(
                sa.select(table.c.state, sa.func.count()).group_by(table.c.state)
            )
            return Counter({str(state): int(n) for state, n in rows})
    finally:
        await engine.dispose()


async def reenqueued(settings: Settings) -> Counter[str]:
    """Moves back to ``Enqueued`` after a claim, by reason (each sent a message of its own)."""
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            table = store.history_table
            rows = await conn.execute(
                sa.select(table.c.reason).where(
                    table.c.state == "Enqueued", table.c.reason != "Created"
                )
            )
            return Counter(str(reason).split(":")[0].split(" (")[0] for reason in rows.scalars())
    finally:
        await engine.dispose()


def returned_on(url: str) -> dict[str, float] | None:
    """``orchestrator_deliveries_returned_total`` by reason as a worker's /metrics shows it
    (None when it does not answer)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "orchestrator_deliveries_returned":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    reason = sample.labels["reason"]
                    counts[reason] = counts.get(reason, 0.0) + sample.value
    return counts


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    return False


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    exited: float | None = None
    #: The returns its /metrics last showed.
    returned: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class WorkerChurn:
    """Worker processes of ``system`` that come and go."""

    def __init__(self, system: System, concurrency: int, queues: Sequence[str]) -> None:
        self.system = system
        self.concurrency = concurrency
        self.queues = ",".join(queues)
        self.workers: list[Worker] = []
        self.kills = self.stops = 0
        self._lock = threading.Lock()

    def start(self) -> Worker:
        name, port = f"worker{len(self.workers) + 1}", free_port()
        process = self.system.start(
            name, "worker", "--concurrency", str(self.concurrency), "--queues", self.queues,
            ORCHESTRATOR_WORKER_OPS_PORT=str(port),
        )  # fmt: skip
        worker = Worker(name, process, port)
        with self._lock:
            self.workers.append(worker)
        threading.Thread(target=self._wait, args=(worker,), daemon=True).start()
        return worker

    def _wait(self, worker: Worker) -> None:
        worker.process.wait()
        worker.exited = time.time()

    def live(self) -> list[Worker]:
        with self._lock:
            return [w for w in self.workers if w.exited is None]

    def ready(self) -> list[Worker]:
        """Live workers whose ops port answers /readyz with 200 (consuming, store reachable)."""
        return [w for w in self.live() if _ready(w.url)]

    def scrape(self) -> None:
        for worker in self.live():
            counts = returned_on(worker.url)
            if counts is not None:
                worker.returned = counts

    def _forget(self, worker: Worker) -> None:
        """Out of the system's processes: its readiness waits must not count a worker that
        was meant to go."""
        self.system.processes.pop(worker.name, None)
        self.system.roles.pop(worker.name, None)

    def kill(self, worker: Worker) -> None:
        self.kills += 1
        self._forget(worker)
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()

    def terminate(self, worker: Worker) -> None:
        """SIGTERM, after a last look at its counters (its ops server stops early)."""
        self.stops += 1
        self._forget(worker)
        counts = returned_on(worker.url)
        if counts is not None:
            worker.returned = counts
        worker.process.send_signal(signal.SIGTERM)

    def stop_all(self, timeout: float = 60) -> None:
        for worker in self.live():
            self.terminate(worker)
            self.stops -= 1  # the run's end, not churn
        for worker in self.workers:
            try:
                worker.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(worker)

    def exits(self) -> dict[int, float]:
        return {w.process.pid: w.exited for w in self.workers if w.exited is not None}

    def unsettled_at_close(self) -> dict[str, int]:
        """Per worker, the deliveries it logged as never settled when it closed its connection
        (RabbitMQ requeues them, towards the delivery limit); its /metrics count of them is
        lost, since a stopping worker is scraped before its SIGTERM."""
        found: dict[str, int] = {}
        for worker in self.workers:
            log = self.system.log_of(worker.name)
            logged = re.findall(r"(\d+) deliveries were never settled", log)
            if logged:
                found[worker.name] = sum(int(n) for n in logged)
        return found

    def returned(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for worker in self.workers:
            total.update(worker.returned)
        return total
