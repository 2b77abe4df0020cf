"""SIGTERM under way: no job ever runs twice at the same time, and a rolling restart of every
worker never counts a lost worker.

Real worker processes are stopped while work keeps arriving (claims in flight, jobs running past
the grace period, jobs that ignore their tokens as code that cannot be stopped does). Every run
of ``faults.marked`` leaves a start and an end mark (``tests.faults.overlaps``); a run without an
end mark lasted until its process exited, as observed here.

Each SIGTERM lands shortly after a burst of short jobs, while the worker is claiming: claims
still being written when it stops are handed back unstarted ("Worker shut down before the job
started" in their history), the path issue 10 found racing. A round of claims is one short
statement now, so a random SIGTERM rarely lands inside one: rounds go on (up to
``MAX_ROUNDS``) while none has, and how many did is reported, not asserted. That path is proven
deterministically by ``tests/worker/test_shutdown_claims.py``, which holds a claim blocked on
row locks while the worker begins to stop.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from orchestrator import Client, JobCall
from orchestrator.db import create_engine
from orchestrator.store import history_table, jobs_table
from tests.faults.conftest import SystemFactory
from tests.faults.harness import wait_until
from tests.faults.overlaps import attempts, overlapping
from tests.faults.scenario import Outcome, wait_for_states
from tests.support.system import System, free_port

pytestmark = pytest.mark.e2e

#: Seeds of the randomized run: one random seed (printed), or ORCHESTRATOR_SHUTDOWN_SEEDS=1,2,3.
SEEDS = [
    int(s)
    for s in os.environ.get(
        "ORCHESTRATOR_SHUTDOWN_SEEDS", str(random.SystemRandom().randrange(1, 100_000))
    ).split(",")
]
#: SIGTERMs at least, and at most while none has found a claim in flight (never required).
ROUNDS = 5
MAX_ROUNDS = 20
UNSTARTED = "Worker shut down before the job started"
UNFINISHED = "Worker shut down before the job finished"


@dataclass
class Workers:
    """Worker processes of a system, started with an ops port so readiness can be awaited, and
    the time each exited, as seen by a thread waiting on it."""

    system: System
    concurrency: int
    started: int = 0
    pids: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    exits: dict[int, float] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    _waiters: list[threading.Thread] = field(default_factory=list)

    def start(self) -> str:
        self.started += 1
        name = f"worker{self.started}"
        port = free_port()
        process = self.system.start(
            name,
            "worker",
            "--concurrency",
            str(self.concurrency),
            ORCHESTRATOR_WORKER_OPS_PORT=str(port),
        )
        self.pids[name], self.ports[name] = process.pid, port
        return name

    def wait_ready(self, name: str) -> None:
        url = f"http://127.0.0.1:{self.ports[name]}/readyz"

        def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url, timeout=2).status_code == 200
            return False

        self.system.wait_until_ready(f"{name} to be ready", ready, [name])

    def terminate(self, name: str) -> None:
        """SIGTERM ``name``; its exit time is taken by a thread waiting on it."""
        process = self.system.processes.pop(name)
        process.send_signal(signal.SIGTERM)

        def wait() -> None:
            try:
                code = process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            self.exits[process.pid] = time.time()
            self.codes[name] = code

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        self._waiters.append(waiter)

    def join(self) -> None:
        for waiter in self._waiters:
            waiter.join()

    def failed_exits(self) -> dict[str, str]:
        """Workers that did not exit 0, with the end of their logs."""
        return {
            name: f"exit {code}:\n{self.system.log_of(name)[-3000:]}"
            for name, code in self.codes.items()
            if code != 0
        }

    def live(self) -> list[str]:
        return [n for n in self.pids if n in self.system.processes]


def enqueue_marked(api_url: str, directory: Path, durations: list[float], **kw: Any) -> list[str]:
    with Client(api_url, timeout=30) as client:
        calls = [
            (JobCall.named("faults.marked", directory=str(directory), seconds=s, **kw), {})
            for s in durations
        ]
        return client.enqueue_many(calls)  # type: ignore[arg-type]


def history_reasons(database_url: str) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(sa.select(history_table.c.state, history_table.c.reason))
                return [(str(r.state), str(r.reason or "")) for r in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def hand_backs(database_url: str, reason: str) -> int:
    return sum(
        1 for state, why in history_reasons(database_url) if state == "Enqueued" and why == reason
    )


def total_losses(database_url: str) -> int:
    async def read() -> int:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                query = sa.select(sa.func.coalesce(sa.func.sum(jobs_table.c.lost_count), 0))
                return int((await conn.execute(query)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def running_on(directory: Path, job_ids: list[str], pid: int, since: float) -> int:
    """Runs of ``job_ids`` in process ``pid`` that started after ``since`` and have not ended."""
    return sum(
        1
        for j in job_ids
        for a in attempts(directory, j)
        if a.pid == pid and a.end is None and a.start > since
    )


def unstarted(directory: Path, job_ids: list[str]) -> int:
    return sum(1 for j in job_ids if not attempts(directory, j))


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("seed", SEEDS)
def test_sigterm_while_claims_are_in_flight_never_overlaps_attempts(
    make_system: SystemFactory, postgres_url: str, amqp_url: str, tmp_path: Path, seed: int
) -> None:
    print(f"shutdown races seed {seed} (ORCHESTRATOR_SHUTDOWN_SEEDS={seed} repeats it)")
    rng = random.Random(seed)
    marks = tmp_path / "marks"
    marks.mkdir()
    system = make_system(
        postgres_url,
        amqp_url,
        ORCHESTRATOR_WORKER_SHUTDOWN_GRACE_SECONDS="1",
        ORCHESTRATOR_LEASE_SECONDS="5",
        ORCHESTRATOR_HEARTBEAT_SECONDS="1",
    )
    system.start("api", "api")
    system.start("scheduler", "scheduler")
    workers = Workers(system, concurrency=4)
    for _ in range(2):
        workers.start()
    system.wait_for_api()
    system.wait_for_catalog("faults.marked")

    job_ids: list[str] = []
    feeding = threading.Event()
    feeding.set()
    feed_rng = random.Random(seed + 1)

    def feed() -> None:
        # Work keeps arriving, so deliveries are being claimed whenever a SIGTERM lands; some
        # jobs run past the grace period and ignore their tokens.
        while feeding.is_set():
            durations = [feed_rng.choice([0.0, 0.05, 0.3, 1.5, 3.0]) for _ in range(3)]
            job_ids.extend(enqueue_marked(system.api_url, marks, durations))
            time.sleep(feed_rng.uniform(0.1, 0.5))

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    began = time.monotonic()
    rounds = unstarted_rounds = 0
    try:
        while rounds < ROUNDS or (not unstarted_rounds and rounds < MAX_ROUNDS):
            for name in workers.live():
                workers.wait_ready(name)
            time.sleep(rng.uniform(0.3, 2.5))  # the moment of the fault is the random part
            # A burst of short jobs keeps every worker claiming when the SIGTERM lands.
            burst = [rng.choice([0.0, 0.0, 0.01]) for _ in range(rng.randint(60, 120))]
            job_ids.extend(enqueue_marked(system.api_url, marks, burst))
            time.sleep(rng.uniform(0.02, 0.3))
            before = hand_backs(postgres_url, UNSTARTED)
            workers.terminate(rng.choice(workers.live()))
            workers.start()
            workers.join()  # the stopped worker has exited: its hand-backs are in the store
            rounds += 1
            unstarted_rounds += hand_backs(postgres_url, UNSTARTED) > before
    finally:
        feeding.clear()
        feeder.join()
    workers.join()
    states = wait_for_states(postgres_url, job_ids, ("Succeeded", "Failed"), timeout=180)
    recovery = time.monotonic() - began

    overlaps = overlapping(marks, job_ids, workers.exits)
    ran_again = sum(1 for j in job_ids if len(attempts(marks, j)) > 1)
    outcome = Outcome.measure(
        f"shutdown-races-{seed}",
        f"{rounds} SIGTERMs of workers (concurrency 4, grace 1 s) at random moments, each "
        "right after a burst, under a steady feed of 0-3 s jobs that ignore their tokens",
        job_ids, states, _NoEffects(), recovery,
        overlapping=len(overlaps), ran_again=ran_again, rounds=rounds,
        unstarted_rounds=unstarted_rounds,
        handed_back_unstarted=hand_backs(postgres_url, UNSTARTED),
        handed_back_running=hand_backs(postgres_url, UNFINISHED),
    )  # fmt: skip
    outcome.report()
    assert not overlaps, overlaps[:5]
    assert not workers.failed_exits()
    assert outcome.stuck == 0 and outcome.completed == len(job_ids), states
    # Whether a SIGTERM found claims in flight (unstarted_rounds, reported above) is not
    # asserted: a round of claims is one short statement now, so random SIGTERMs rarely land
    # inside one. The claims-in-flight path is proven deterministically by
    # tests/worker/test_shutdown_claims.py (a claim held blocked while the worker stops).


@pytest.mark.timeout(900)
def test_rolling_restart_of_every_worker_counts_no_loss(
    make_system: SystemFactory, postgres_url: str, amqp_url: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    job_seconds, lease = 10.0, 3.0
    # A grace longer than the lease: only renewals during the grace keep the jobs.
    system = make_system(
        postgres_url,
        amqp_url,
        ORCHESTRATOR_WORKER_SHUTDOWN_GRACE_SECONDS="25",
        ORCHESTRATOR_LEASE_SECONDS=str(lease),
        ORCHESTRATOR_HEARTBEAT_SECONDS="1",
    )
    system.start("api", "api")
    system.start("scheduler", "scheduler")
    workers = Workers(system, concurrency=2)
    originals = [workers.start() for _ in range(3)]
    system.wait_for_api()
    for name in originals:
        workers.wait_ready(name)

    job_ids: list[str] = []
    for victim in originals:
        replacement = workers.start()
        workers.wait_ready(replacement)
        pid = workers.pids[victim]

        def busy() -> bool:
            # A job that started on the victim so recently that its lease would lapse long
            # before it ends, unless renewed during the grace.
            since = time.time() - (job_seconds - lease - 2)
            if running_on(marks, job_ids, pid, since):  # noqa: B023
                return True
            if unstarted(marks, job_ids) < 2:
                job_ids.extend(enqueue_marked(system.api_url, marks, [job_seconds] * 4))
            return False

        wait_until(busy, 300, f"{victim} running a fresh job", interval=0.2)
        workers.terminate(victim)
        workers.join()  # one at a time, as a rolling deploy does
    states = wait_for_states(postgres_url, job_ids, ("Succeeded", "Failed"), timeout=300)

    reasons = history_reasons(postgres_url)
    assert [(s, r) for s, r in reasons if "Lease expired" in r or "Worker lost" in r] == []
    assert total_losses(postgres_url) == 0
    assert "expired leases" not in system.log_of("scheduler")
    assert not workers.failed_exits()
    assert [states[j] for j in job_ids] == ["Succeeded"] * len(job_ids)
    # Every job running at a SIGTERM finished inside the grace: one run each, never two.
    assert all(len(attempts(marks, j)) == 1 for j in job_ids)
    assert not overlapping(marks, job_ids, workers.exits)


class _NoEffects:
    """``Outcome.measure`` counts effects; these jobs mark runs instead (``overlaps``)."""

    def executions(self, job_ids: list[str]) -> dict[str, int]:
        return dict.fromkeys(job_ids, 1)

    def effects(self, job_ids: list[str]) -> dict[str, int]:
        return dict.fromkeys(job_ids, 1)
