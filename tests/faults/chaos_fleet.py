"""The processes of a chaos run (:mod:`tests.faults.chaos`), the faults that hit them, and a
watcher of who leads and whether the API answers.

Every process is an :class:`Incarnation`: a role in a slot; a killed or stopped one is replaced
in its slot at once by a new incarnation. Each fault is kept as a :class:`Fault` record, and the
:class:`Watcher` notes, every 0.25 s, the scheduler lease's holder, the processes announced in the
store and whether the API answers ``/readyz``: the recovery figures are read from these.
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy as sa

from orchestrator.db import create_engine
from orchestrator.models import Lease, Server
from tests.support.system import System

if TYPE_CHECKING:
    from tests.faults.chaos import ChaosConfig

_leases = Lease.__table__  # type: ignore[attr-defined]
_servers = Server.__table__  # type: ignore[attr-defined]
#: A role sent SIGTERM must have exited by then (a worker's grace here is 2 s); the run's end
#: kills what is still alive after it, and an API stopped by a fault is killed then so that its
#: replacement can take the port.
STOP_LIMIT = 55.0


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
        """SIGTERM; the waiting thread notes when it has exited."""
        incarnation.ended_by = "SIGTERM"
        incarnation.signalled = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(incarnation.pid, signal.SIGTERM)

    def wait_exit(self, incarnation: Incarnation, timeout: float) -> None:
        """Until a signalled process has exited; killed once ``timeout`` has passed."""
        try:
            incarnation.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(incarnation)
        self._exited(incarnation, incarnation.ended_by)

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
# Faults


@dataclass
class Fault:
    kind: str
    at: float
    target: str
    pid: int
    #: The incarnation started in its place.
    replacement: str = ""


#: Faults and their weights: every role's process killed (kill -9) or stopped (SIGTERM), half
#: and half. Workers are hit most (three of them, and their faults are the ones that cut jobs
#: off); the leading scheduler half as often; the API least: a restart stops all intake for as
#: long as a replacement takes to start (15-60 s on a loaded 2-core machine, more under heavy
#: load).
FAULT_KINDS = {
    "kill -9 worker": 3.0,
    "SIGTERM worker": 3.0,
    "kill -9 leading scheduler": 1.5,
    "SIGTERM leading scheduler": 1.5,
    "kill -9 api": 0.75,
    "SIGTERM api": 0.75,
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
                and api_ready(self.fleet.system.api_url)
            ):
                # A worker fault lands while claims are in flight: right after a burst of jobs,
                # as a deploy during traffic does (the SIGTERM race of issue 10 needs it).
                self.burst(self.rng.randint(24, 48))
                stop.wait(self.rng.uniform(0.05, 0.5))
            self.faults.append(self._strike(kind, victim))

    def _strike(self, kind: str, victim: Incarnation) -> Fault:
        fault = Fault(kind, time.time(), victim.name, victim.pid)
        if kind.startswith("SIGTERM"):
            self.fleet.terminate(victim)
            if victim.role == "api":
                # Its replacement needs the port: as a supervisor restarting it would, wait for
                # the old process to end first.
                self.fleet.wait_exit(victim, STOP_LIMIT)
        else:
            self.fleet.kill(victim)
        fault.replacement = self.fleet.start(victim.slot, victim.role).name
        return fault

    def _victim(self, kind: str) -> Incarnation | None:
        if kind.endswith("worker"):
            # At least one worker keeps consuming while replacements start (15-60 s each on a
            # loaded machine), so the run has capacity throughout.
            ready = [w for w in self.fleet.alive("worker") if self.fleet.ready_worker(w)]
            return self.rng.choice(ready) if len(ready) >= 2 else None
        if kind.endswith("api"):
            apis = self.fleet.alive("api")
            return apis[0] if apis and api_ready(self.fleet.system.api_url) else None
        # Only with a standby ready to take over: the fault under test is a failover.
        pid = self.leader()
        standby = [s for s in self.fleet.alive("scheduler") if s.pid != pid and self.ready(s.pid)]
        # The lease outlives a killed holder by up to its ttl: only a live holder is a victim.
        leader = self.fleet.by_pid(pid) if pid is not None else None
        return leader if leader is not None and leader.alive() and standby else None


def api_ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    return False


# --------------------------------------------------------------------------------------------
# Watching


class Watcher:
    """A thread that notes, every 0.25 s, who holds the scheduler lease, which processes have
    announced themselves in the store (a scheduler is ready once it has) and whether the API
    answers ``/readyz``."""

    def __init__(self, database_url: str, api_url: str) -> None:
        self.database_url = database_url
        self.api_url = api_url
        #: (time, pid of the holder or None) at every change.
        self.leaders: list[tuple[float, int | None]] = []
        #: pid → when its server record was first seen.
        self.announced: dict[int, float] = {}
        #: (time, whether the API answered /readyz with 200) at every change.
        self.api: list[tuple[float, bool]] = []
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
            async with httpx.AsyncClient(timeout=1.0) as http:
                while not self.stop.is_set():
                    await asyncio.gather(self._read_leader(engine), self._read_api(http))
                    await asyncio.sleep(0.25)
        finally:
            await engine.dispose()

    async def _read_api(self, http: httpx.AsyncClient) -> None:
        up = False
        with contextlib.suppress(httpx.HTTPError):
            up = (await http.get(f"{self.api_url}/readyz")).status_code == 200
        if not self.api or self.api[-1][1] != up:
            self.api.append((time.time(), up))

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
