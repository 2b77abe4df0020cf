"""A seeded chaos run: a whole system of real processes under mixed load while one random fault
after another hits it (issue 10, point 6).

On PostgreSQL: 1 API, 3 workers, 2 schedulers and 1 janitor started through the CLI
(``bench.system``), short leases with matching heartbeats. Client threads send mixed load through
the HTTP API (single jobs, jobs with an idempotency key sent twice, bulk requests, delayed jobs,
continuations, jobs designed to fail, and a recurring job with a seconds-field cron). Meanwhile,
every few seconds, a seeded RNG picks one fault: kill -9 a worker, SIGTERM a worker, kill -9 the
scheduler holding the lease, kill -9 the API. A killed or stopped process is replaced at once, so
the system keeps its capacity. Clients retry requests with their idempotency key while the API is
down (and plain requests only when nothing can have reached the server).

Everything observed is kept as plain records (what the clients were told, every process's life,
who held the scheduler lease when); :mod:`tests.faults.chaos_checks` turns them and the store
into the checks and the summary table.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import sqlalchemy as sa

from bench.system import System
from orchestrator.db import create_engine
from orchestrator.models import Lease, Server
from orchestrator.store import jobs_table

JOB = "faults.chaos"
FINAL = ("Succeeded", "Failed", "Deleted")
_leases = Lease.__table__  # type: ignore[attr-defined]
_servers = Server.__table__  # type: ignore[attr-defined]
#: A request with idempotency keys is repeated this long while the API is down (a replacement
#: API takes 15-60 s to start on a loaded 2-core machine).
RETRY_FOR = 240.0


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
# Processes


@dataclass
class Incarnation:
    """One process of a role; a replacement in the same slot is a new incarnation."""

    name: str
    role: str
    slot: str
    process: subprocess.Popen[bytes]
    started: float
    exited: float | None = None
    #: How it ended: "kill -9", "SIGTERM", "stop" (the end of the run) or "exit" (by itself).
    ended_by: str = ""
    #: When it was sent SIGTERM (a fault or the end of the run).
    signalled: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.exited is None


class Fleet:
    """Every process of the run, alive or dead, with the times it started and exited."""

    def __init__(self, system: System, config: ChaosConfig) -> None:
        self.system = system
        self.config = config
        self.incarnations: list[Incarnation] = []
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def start(self, slot: str, role: str) -> Incarnation:
        with self._lock:
            number = self._counts[slot] = self._counts.get(slot, 0) + 1
        name = f"{slot}.{number}"
        args = ("--concurrency", str(self.config.concurrency)) if role == "worker" else ()
        process = self.system.start(name, role, *args)
        incarnation = Incarnation(name, role, slot, process, time.time())
        with self._lock:
            self.incarnations.append(incarnation)
        # A thread blocked in waitpid notes the exit the moment it happens.
        threading.Thread(
            target=self._wait, args=(incarnation,), name=f"wait-{name}", daemon=True
        ).start()
        return incarnation

    def _wait(self, incarnation: Incarnation) -> None:
        incarnation.process.wait()
        self._exited(incarnation, "exit")

    def alive(self, role: str) -> list[Incarnation]:
        with self._lock:
            return [i for i in self.incarnations if i.role == role and i.alive()]

    def by_pid(self, pid: int) -> Incarnation | None:
        with self._lock:
            return next((i for i in self.incarnations if i.pid == pid), None)

    def kill(self, incarnation: Incarnation) -> None:
        """kill -9, and the moment it is certainly dead."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(incarnation.pid, signal.SIGKILL)
        incarnation.process.wait()
        self._exited(incarnation, "kill -9")

    def terminate(self, incarnation: Incarnation) -> None:
        """SIGTERM; :meth:`watch` notes when it has exited."""
        incarnation.ended_by = "SIGTERM"
        incarnation.signalled = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(incarnation.pid, signal.SIGTERM)

    def _exited(self, incarnation: Incarnation, how: str) -> None:
        with self._lock:
            if incarnation.exited is None:
                incarnation.exited = time.time()
                incarnation.ended_by = incarnation.ended_by or how

    def ready_worker(self, incarnation: Incarnation) -> bool:
        return "consuming" in self.system.log_of(incarnation.name)

    def stop_all(self, timeout: float = 60) -> None:
        """SIGTERM every live process (the run's end), then wait for each."""
        live = [i for i in self.incarnations if i.alive()]
        for incarnation in live:
            incarnation.ended_by = incarnation.ended_by or "stop"
            incarnation.signalled = incarnation.signalled or time.time()
            with contextlib.suppress(ProcessLookupError):
                os.kill(incarnation.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for incarnation in live:
            try:
                incarnation.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(incarnation)
            self._exited(incarnation, "stop")


# --------------------------------------------------------------------------------------------
# What the clients were told


@dataclass
class Sent:
    """One job the API acknowledged (2xx with its id)."""

    job_id: str
    kind: str
    sent_at: float
    acked_at: float
    fail: bool = False
    key: str | None = None
    #: Delayed jobs: the delay asked for and the due time the store answered (epoch seconds).
    delay: float | None = None
    due: float | None = None
    parent: str | None = None
    #: Keyed jobs sent twice: the id the second request answered.
    replay_id: str | None = None


@dataclass
class Ledger:
    """Everything the clients sent and were told; shared by the client threads."""

    sent: list[Sent] = field(default_factory=list)
    #: Tags of plain requests cut off mid-flight (the job may or may not exist).
    indeterminate: list[str] = field(default_factory=list)
    #: Requests answered with an unexpected status (a bug in the test or the API).
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    retried: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *sent: Sent) -> None:
        with self.lock:
            self.sent.extend(sent)

    def note(self, *, requests: int = 0, retried: int = 0) -> None:
        with self.lock:
            self.requests += requests
            self.retried += retried


class CutOffError(Exception):
    """The request may or may not have reached the server (the API died while answering)."""


class ApiClient:
    """One client thread's HTTP calls: retry while the API is down, never guess a result."""

    def __init__(self, base_url: str, ledger: Ledger) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(20.0, connect=2.0))
        self._ledger = ledger

    def close(self) -> None:
        self._http.close()

    def post(self, path: str, body: dict[str, Any], *, keyed: bool) -> dict[str, Any]:
        """The answer of a 2xx. A request with idempotency keys is sent again, with the same
        keys, until answered. One without is sent again only when it never left the client
        (connection refused) or the API said nothing was changed (503), else
        :class:`CutOffError`: the job may or may not exist."""
        deadline = time.monotonic() + RETRY_FOR
        while True:
            self._ledger.note(requests=1)
            try:
                response = self._http.post(path, json=body)
            except httpx.ConnectError:
                pass  # nothing reached the server
            except httpx.TransportError as exc:
                if not keyed:
                    raise CutOffError(repr(exc)) from None
            else:
                if response.status_code in (200, 201):
                    return dict(response.json())
                if response.status_code != 503 and not (keyed and response.status_code >= 500):
                    raise AssertionError(f"POST {path}: {response.status_code} {response.text}")
            if time.monotonic() > deadline:
                raise CutOffError(f"POST {path}: no answer within {RETRY_FOR:.0f} s")
            self._ledger.note(retried=1)
            time.sleep(0.2)

    def due(self, job_id: str) -> float | None:
        """A Scheduled job's due time as the store holds it (None if not readable now)."""
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError, TypeError):
            response = self._http.get(f"/api/v1/jobs/{job_id}")
            if response.status_code == 200 and response.json().get("due_at"):
                return _epoch(str(response.json()["due_at"]))
        return None


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


class LoadClient:
    """One client thread: a seeded mix of requests at its share of the rate."""

    def __init__(
        self, number: int, config: ChaosConfig, api: ApiClient, ledger: Ledger, marks: Path
    ) -> None:
        self.number = number
        self.rng = random.Random(config.seed * 1000 + number)
        self.api = api
        self.ledger = ledger
        self.marks = str(marks)
        self.per_job = config.clients / config.rate
        self._count = 0
        self.actions: list[tuple[float, Callable[[], int]]] = [
            (0.35, self.plain),
            (0.15, self.keyed_twice),
            (0.20, self.bulk),
            (0.12, self.delayed),
            (0.10, self.continuation),
            (0.08, self.failing),
        ]

    def run(self, stop: threading.Event) -> None:
        weights = [w for w, _ in self.actions]
        while not stop.is_set():
            began = time.monotonic()
            (action,) = self.rng.choices([a for _, a in self.actions], weights)
            try:
                jobs = action()
            except CutOffError:
                jobs = 1
            except AssertionError as exc:
                with self.ledger.lock:
                    self.ledger.errors.append(str(exc))
                jobs = 1
            stop.wait(max(0.0, jobs * self.per_job - (time.monotonic() - began)))

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}-{self.number}-{self._count}-{uuid.uuid4().hex[:6]}"

    def _body(self, *, fail: bool = False, key: str | None = None, **extra: Any) -> dict[str, Any]:
        tag = key or self._name("t")
        body: dict[str, Any] = {
            "job": JOB,
            "args": [self.marks],
            "kwargs": {"ms": self.rng.randint(0, 300), "fail": fail, "tag": tag},
            **extra,
        }
        if key is not None:
            body["idempotency_key"] = key
        return body

    def _send(self, kind: str, body: dict[str, Any], **sent: Any) -> Sent:
        began = time.time()
        answer = self.api.post("/api/v1/jobs", body, keyed="idempotency_key" in body)
        record = Sent(str(answer["id"]), kind, began, time.time(), **sent)
        self.ledger.add(record)
        return record

    def plain(self) -> int:
        body = self._body()
        try:
            self._send("plain", body)
        except CutOffError:
            with self.ledger.lock:
                self.ledger.indeterminate.append(body["kwargs"]["tag"])
        return 1

    def keyed_twice(self) -> int:
        key = self._name("k")
        body = self._body(key=key)
        record = self._send("keyed", body, key=key)
        again = self.api.post("/api/v1/jobs", body, keyed=True)
        record.replay_id = str(again["id"])
        return 1

    def bulk(self, size: int | None = None, keyed: bool | None = None) -> int:
        size = self.rng.randint(10, 40) if size is None else size
        keyed = self.rng.random() < 0.5 if keyed is None else keyed
        bodies = [self._body(key=self._name("b") if keyed else None) for _ in range(size)]
        began = time.time()
        try:
            answer = self.api.post("/api/v1/jobs/bulk", {"jobs": bodies}, keyed=keyed)
        except CutOffError:
            with self.ledger.lock:
                self.ledger.indeterminate.extend(b["kwargs"]["tag"] for b in bodies)
            return size
        acked = time.time()
        self.ledger.add(
            *(
                Sent(str(job_id), "bulk", began, acked, key=body.get("idempotency_key"))
                for job_id, body in zip(answer["ids"], bodies, strict=True)
            )
        )
        return size

    def delayed(self) -> int:
        key = self._name("d")
        delay = round(self.rng.uniform(0.5, 6.0), 3)
        record = self._send("delayed", self._body(key=key, delay_seconds=delay), key=key)
        record.delay = delay
        record.due = self.api.due(record.job_id)
        return 1

    def continuation(self) -> int:
        parent = self._send("parent", self._body(key=(key := self._name("p"))), key=key)
        child_key = self._name("c")
        body = self._body(key=child_key, continue_after=parent.job_id)
        self._send("child", body, key=child_key, parent=parent.job_id)
        return 2

    def failing(self) -> int:
        key = self._name("f")
        body = self._body(fail=True, key=key, retries=1, retry_delays=[0.5])
        self._send("failing", body, key=key, fail=True)
        return 1


# --------------------------------------------------------------------------------------------
# Faults


@dataclass
class Fault:
    kind: str
    at: float
    target: str
    pid: int
    #: The incarnation started in its place.
    replacement: str = ""


#: Faults and their weights. An API restart stops all intake for as long as a replacement takes
#: to start (15-60 s on a loaded 2-core machine, more under heavy load), so it is drawn less.
FAULT_KINDS = {
    "kill -9 worker": 3,
    "SIGTERM worker": 3,
    "kill -9 leading scheduler": 2,
    "kill -9 api": 1,
}


class Injector:
    """Every few seconds (seeded) one fault; the victim's slot gets a new process at once."""

    def __init__(self, config: ChaosConfig, fleet: Fleet, watcher: Watcher) -> None:
        self.rng = random.Random(config.seed)
        self.config = config
        self.fleet = fleet
        self.leader = watcher.leader
        #: A process is ready (schedulers) once it has announced itself in the store.
        self.ready: Callable[[int], bool] = lambda pid: pid in watcher.announced
        self.faults: list[Fault] = []
        self.skipped: list[str] = []
        #: Sends a keyed bulk of n jobs (set by the run to one of the load clients).
        self.burst: Callable[[int], object] | None = None

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.rng.uniform(*self.config.fault_every)):
            (kind,) = self.rng.choices(list(FAULT_KINDS), list(FAULT_KINDS.values()))
            victim = self._victim(kind)
            if victim is None:
                self.skipped.append(kind)
                continue
            if (
                kind.endswith("worker")
                and self.burst is not None
                and _api_ready(self.fleet.system.api_url)
            ):
                # A worker fault lands while claims are in flight: right after a burst of jobs,
                # as a deploy during traffic does (the SIGTERM race of issue 10 needs it).
                self.burst(self.rng.randint(24, 48))
                stop.wait(self.rng.uniform(0.05, 0.5))
            fault = Fault(kind, time.time(), victim.name, victim.pid)
            if kind == "SIGTERM worker":
                self.fleet.terminate(victim)
            else:
                self.fleet.kill(victim)
            fault.replacement = self.fleet.start(victim.slot, victim.role).name
            self.faults.append(fault)

    def _victim(self, kind: str) -> Incarnation | None:
        if kind.endswith("worker"):
            # At least one worker keeps consuming while replacements start (15-60 s each on a
            # loaded machine), so the run has capacity throughout.
            ready = [w for w in self.fleet.alive("worker") if self.fleet.ready_worker(w)]
            return self.rng.choice(ready) if len(ready) >= 2 else None
        if kind == "kill -9 api":
            apis = self.fleet.alive("api")
            return apis[0] if apis and _api_ready(self.fleet.system.api_url) else None
        # Only with a standby ready to take over: the fault under test is a failover.
        pid = self.leader()
        standby = [s for s in self.fleet.alive("scheduler") if s.pid != pid and self.ready(s.pid)]
        # The lease outlives a killed holder by up to its ttl: only a live holder is a victim.
        leader = self.fleet.by_pid(pid) if pid is not None else None
        return leader if leader is not None and leader.alive() and standby else None


def _api_ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    return False


# --------------------------------------------------------------------------------------------
# Watching the store


class Watcher:
    """A thread that notes, every 0.25 s, who holds the scheduler lease and which processes
    have announced themselves in the store (a scheduler is ready once it has)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        #: (time, pid of the holder or None) at every change.
        self.leaders: list[tuple[float, int | None]] = []
        #: pid → when its server record was first seen.
        self.announced: dict[int, float] = {}
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        self._thread.join(10)

    def leader(self) -> int | None:
        return self.leaders[-1][1] if self.leaders else None

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        engine = create_engine(self.database_url, pool_size=1)
        try:
            while not self.stop.is_set():
                await self._read_leader(engine)
                await asyncio.sleep(0.25)
        finally:
            await engine.dispose()

    async def _read_leader(self, engine: Any) -> None:
        try:
            async with engine.connect() as conn:
                holder = (
                    await conn.execute(
                        sa.select(_leases.c.holder).where(
                            _leases.c.name == "scheduler", _leases.c.expires_at > sa.func.now()
                        )
                    )
                ).scalar()
                pids = (await conn.execute(sa.select(_servers.c.pid))).scalars().all()
        except Exception:  # the store may be busy; try again next time
            return
        now = time.time()
        for announced in pids:
            self.announced.setdefault(int(announced), now)
        pid = int(str(holder).split(":")[2]) if holder else None
        if not self.leaders or self.leaders[-1][1] != pid:
            self.leaders.append((time.time(), pid))


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


async def dead_queue_depth(amqp_url: str, namespace: str) -> int:
    connection = await aio_pika.connect(amqp_url)
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
            and _api_ready(run.system.api_url)
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
    watcher = Watcher(system.database_url)
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
    with contextlib.suppress(Exception):
        run.dead_queue = asyncio.run(dead_queue_depth(system.amqp_url, system.namespace))
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
    httpx.delete(f"{run.system.api_url}/api/v1/recurring/{run.recurring_id}", timeout=20)
    run.recurring_deleted = time.time()
    run.settled = wait_until_final(run.system.database_url, None, budget - time.monotonic())


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
