"""Orchestrator beside Dramatiq and Celery on the same RabbitMQ and PostgreSQL, in one run.

    python -m bench.peers [--jobs 10000] [--quick] [--json]

Dramatiq and Celery are not project dependencies: they are installed into a throwaway virtual
environment (``--venv``, default /tmp/orch-peers-venv) with pika and kombu, their RabbitMQ
clients. Each system runs one worker process; Orchestrator runs its API, worker and scheduler as
real processes on a fresh PostgreSQL database with full history. Every job, in every system, runs
the same body (``bench.marks.record``) and every producer is the same loop in a process of its
own (``bench.marks``), so only the systems differ. The workloads, each run for every system in
turn before the next workload starts (interleaved, so the machine's drift hits all alike):

- W1: one producer sends N no-op jobs one call at a time through the ordinary client
  (``Client.enqueue``; Dramatiq ``send``, also with publisher confirms; Celery ``delay``);
  end to end = N / (last job started - first send);
- W1-bulk: the same through Orchestrator's ``enqueue_many`` (500 per call);
- W1d: drain of an N-job backlog, with the worker started once the queue holds every message;
  (N - 1) / (last job started - first job started);
- W2: one producer at a steady rate (200/s): send → start p50/p99/max and the rate achieved;
- W3: 500 jobs all due 5 s after the first send: start - due;
- W3b: 200 jobs delayed 6 s, then 200 by 3 s, then 200 by 0.5 s: per class p99, share > 100 ms.

Afterwards it checks that no job was lost or ran twice (every system), and for Orchestrator that
every job ended Succeeded with its full history (three rows, four for a delayed job).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import sqlalchemy as sa

from orchestrator.db import create_engine
from tests.support.system import (
    AMQP_URL,
    ROOT,
    System,
    drop_postgres_database,
    new_postgres_database,
)

PEER_PACKAGES = ("dramatiq[rabbitmq]", "celery", "py-spy")
SYSTEMS = ("orchestrator", "orchestrator-direct", "dramatiq", "dramatiq-confirms", "celery")
#: The peers, whose figures the ratios compare against.
PEERS = ("dramatiq", "dramatiq-confirms", "celery")
WORKLOADS = ("w1", "w1-bulk", "w1d", "w2", "w3", "w3b")
#: Workloads each system takes part in (confirms change only the producer; bulk is ours alone).
PLAYS = {
    "orchestrator": set(WORKLOADS),
    "dramatiq": set(WORKLOADS) - {"w1-bulk"},
    "dramatiq-confirms": {"w1"},
    # The same system, the producer writing to the store itself (orchestrator.direct).
    "orchestrator-direct": {"w1", "w2"},
    "celery": set(WORKLOADS) - {"w1-bulk"},
}
DRAMATIQ_TASKS = """
import os
import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from bench import marks
dramatiq.set_broker(RabbitmqBroker(url=os.environ["BROKER"]))
@dramatiq.actor(actor_name="mark", queue_name=os.environ["QUEUE"], max_retries=0)
def mark(tag, ref):
    marks.record(tag, ref)
"""
CELERY_TASKS = """
import os
from celery import Celery
from bench import marks
app = Celery("peers", broker=os.environ["BROKER"])
app.conf.task_default_queue = os.environ["QUEUE"]
@app.task(name="peers.mark", ignore_result=True)
def mark(tag, ref):
    marks.record(tag, ref)
"""
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import dramatiq, pika, celery, kombu"]
    if not python.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
        say(f"installing {', '.join(PEER_PACKAGES)} into {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


class Notes:
    """What the jobs of one system recorded, read incrementally from its file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.by_tag: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open() as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            tag, ref, at = line.split()
            self.by_tag[tag].append((float(ref), float(at)))

    def count(self, tag: str) -> int:
        self.read()
        return len(self.by_tag[tag])


@dataclass
class Peer:
    """A system under test: how to start and stop its worker, and how to run its producer."""

    name: str
    notes: Notes
    producer: Callable[[str, str, int, str], list[str]]
    start_worker: Callable[[], None]
    stop_worker: Callable[[], None]
    queue_name: str
    env: dict[str, str] = field(default_factory=dict)


def orchestrator_peer(work: Path, concurrency: int) -> tuple[Peer, System, str]:
    db_name, url = new_postgres_database()
    out = work / "orchestrator.out"
    system = System(
        database_url=url, jobs="bench.jobs", extra_env={"PEERS_OUT": str(out)}, log_dir=work
    )
    try:
        system.start("api", "api")
        system.start("scheduler", "scheduler")
        system.start("worker", "worker", "--concurrency", str(concurrency))
        system.wait_for_api(timeout=300)
        system.wait_for_catalog("bench.mark", timeout=300)
    except BaseException:
        system.stop_all()
        drop_postgres_database(db_name)
        raise

    def start_worker() -> None:
        system.start("worker", "worker", "--concurrency", str(concurrency))

    def stop_worker() -> None:
        system.stop("worker")

    def producer(system_name: str, workload: str, n: int, tag: str) -> list[str]:
        return [sys.executable, "-m", "bench.marks", system_name, workload, str(n),
                "--tag", tag, "--url", system.api_url]

    # The DirectClient producer reads the store's and broker's addresses as the roles do.
    settings = {k: v for k, v in system.env().items() if k.startswith("ORCHESTRATOR_")}
    peer = Peer("orchestrator", Notes(out), producer, start_worker, stop_worker,
                f"{system.namespace}.q.default", {"PYTHONPATH": str(ROOT), **settings})
    return peer, system, db_name


def external_peer(name: str, python: Path, work: Path, threads: int) -> tuple[Peer, list[str]]:
    queue = f"peers-{name}-{uuid.uuid4().hex[:8]}"
    out = work / f"{name}.out"
    module = f"peer_{name}"
    (work / f"{module}.py").write_text(DRAMATIQ_TASKS if name == "dramatiq" else CELERY_TASKS)
    env = dict(os.environ, BROKER=AMQP_URL, QUEUE=queue, PEERS_OUT=str(out),
               PYTHONPATH=f"{work}{os.pathsep}{ROOT}")
    if name == "dramatiq":
        command = [str(python), "-m", "dramatiq", module, "--processes", "1",
                   "--threads", str(threads)]
        queues = [queue, f"{queue}.DQ", f"{queue}.XQ"]
    else:
        command = [str(python), "-m", "celery", "-A", module, "worker", "--pool", "threads",
                   "-c", str(threads), "--loglevel", "WARNING", "--without-heartbeat",
                   "--without-mingle", "--without-gossip", "-Q", queue]
        queues = [queue]
    running: list[subprocess.Popen[bytes]] = []

    def start_worker() -> None:
        log = (work / f"{name}-worker.log").open("ab")
        running.append(subprocess.Popen(command, cwd=work, env=env, stdout=log,
                                        stderr=subprocess.STDOUT))

    def stop_worker() -> None:
        process = running.pop()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def producer(system_name: str, workload: str, n: int, tag: str) -> list[str]:
        return [str(python), "-m", "bench.marks", system_name, workload, str(n),
                "--tag", tag, "--url", AMQP_URL, "--queue", queue]

    start_worker()
    return Peer(name, Notes(out), producer, start_worker, stop_worker, queue, env), queues


async def _queue_depth(name: str) -> int:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def _delete_queues(names: list[str]) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        for name in names:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
    finally:
        await connection.close()


def peer_of(system: str) -> str:
    """The system whose workers run ``system``'s jobs (a variant differs in its producer)."""
    return system.removesuffix("-confirms").removesuffix("-direct")


@dataclass
class Bench:
    args: argparse.Namespace
    peers: dict[str, Peer]
    rate: float
    results: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    sent: dict[tuple[str, str], int] = field(default_factory=dict)

    def produce(self, peer: Peer, system: str, workload: str, n: int, tag: str) -> dict[str, Any]:
        command = peer.producer(system, workload, n, tag)
        if workload == "w2":
            command += ["--rate", str(self.rate)]
        done = subprocess.run(command, cwd=ROOT, env=dict(os.environ, **peer.env),
                              stdout=subprocess.PIPE, check=True)
        summary: dict[str, Any] = json.loads(done.stdout)
        return summary

    def wait(self, peer: Peer, tags: dict[str, int], timeout: float) -> dict[str, int]:
        """Until every tag has its jobs recorded (or the timeout): the count missing per tag."""
        deadline = time.monotonic() + timeout
        shown = time.monotonic()
        while True:
            missing = {tag: n - peer.notes.count(tag) for tag, n in tags.items()}
            if all(m <= 0 for m in missing.values()) or time.monotonic() > deadline:
                time.sleep(0.3)  # a late duplicate would show up in this window
                return {tag: n - peer.notes.count(tag) for tag, n in tags.items()}
            if time.monotonic() - shown > 5:
                shown = time.monotonic()
                left = sum(max(0, m) for m in missing.values())
                say(f"  {peer.name}: waiting for {left} jobs")
            time.sleep(0.05)

    def check(self, peer: Peer, system: str, tags: dict[str, int], timeout: float) -> None:
        for tag, missing in self.wait(peer, tags, timeout).items():
            self.sent[(system, tag)] = tags[tag]
            if missing:
                kind = "LOST (not run)" if missing > 0 else "RAN TWICE"
                say(f"  {system} {tag}: {abs(missing)} jobs {kind}")

    def run(self, workload: str, system: str) -> None:
        peer = self.peers[peer_of(system)]
        n = self.args.jobs
        tag = f"{workload}-{system}-{uuid.uuid4().hex[:6]}"
        say(f"{workload} {system}")
        method = getattr(self, workload.replace("-", "_"))
        self.results[workload][system] = method(peer, system, n, tag)
        say(f"  {system}: {json.dumps(self.results[workload][system])}")

    def w1(self, peer: Peer, system: str, n: int, tag: str) -> dict[str, Any]:
        sent = self.produce(peer, system, "w1", n, tag)
        self.check(peer, system, {tag: n}, 120 + n / 20)
        last = max(at for _, at in peer.notes.by_tag[tag])
        return {
            "send_jobs_per_s": sent["send_jobs_per_s"],
            "call_p50_ms": sent["call"]["p50_ms"],
            "call_p99_ms": sent["call"]["p99_ms"],
            "end_to_end_jobs_per_s": round(n / (last - sent["started"]), 1),
        }

    def w1_bulk(self, peer: Peer, system: str, n: int, tag: str) -> dict[str, Any]:
        sent = self.produce(peer, system, "w1-bulk", n, tag)
        self.check(peer, system, {tag: n}, 120 + n / 20)
        last = max(at for _, at in peer.notes.by_tag[tag])
        return {
            "send_jobs_per_s": sent["send_jobs_per_s"],
            "end_to_end_jobs_per_s": round(n / (last - sent["started"]), 1),
        }

    def w1d(self, peer: Peer, system: str, n: int, tag: str) -> dict[str, Any]:
        peer.stop_worker()
        self.produce(peer, system, "w1d", n, tag)
        deadline = time.monotonic() + 60
        while asyncio.run(_queue_depth(peer.queue_name)) < n and time.monotonic() < deadline:
            time.sleep(0.2)  # Orchestrator publishes after commit: wait for every message
        peer.start_worker()
        self.check(peer, system, {tag: n}, 120 + n / 20)
        times = sorted(at for _, at in peer.notes.by_tag[tag])
        return {"drain_jobs_per_s": round((len(times) - 1) / (times[-1] - times[0]), 1)}

    def w2(self, peer: Peer, system: str, n: int, tag: str) -> dict[str, Any]:
        jobs = int(self.rate * self.args.seconds)
        sent = self.produce(peer, system, "w2", jobs, tag)
        self.check(peer, system, {tag: jobs}, 60)
        waits = sorted(at - ref for ref, at in peer.notes.by_tag[tag])
        return {"achieved_rate": sent["send_jobs_per_s"], **percentiles(waits)}

    def w3(self, peer: Peer, system: str, n: int, tag: str) -> dict[str, Any]:
        jobs = self.args.burst
        sent = self.produce(peer, system, "w3", jobs, tag)
        self.check(peer, system, {tag: jobs}, 90)
        late = percentiles(sorted(at - due for due, at in peer.notes.by_tag[tag]))
        # A producer slower than 100 jobs/s sends the last jobs after they were due, which then
        # counts as lateness: this says how long the sending took.
        return {**late, "send_seconds": round(sent["finished"] - sent["started"], 2)}

    def w3b(self, peer: Peer, system: str, n: int, tag: str) -> dict[str, Any]:
        per_class = self.args.mixed
        self.produce(peer, system, "w3b", per_class, tag)
        classes = {f"{tag}-{d}": per_class for d in ("6", "3", "0.5")}
        self.check(peer, system, classes, 90)
        result: dict[str, Any] = {}
        everything: list[float] = []
        for d in ("6", "3", "0.5"):
            late = sorted(at - due for due, at in peer.notes.by_tag[f"{tag}-{d}"])
            everything += late
            result[f"p99_ms_{d}s"] = percentiles(late).get("p99_ms")
        result["p99_ms_all"] = percentiles(sorted(everything)).get("p99_ms")
        result["share_late_100ms"] = round(
            sum(1 for x in everything if x > 0.1) / max(1, len(everything)), 3
        )
        return result


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_ms": round(statistics.median(values) * 1000, 2),
        "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 2),
        "max_ms": round(values[-1] * 1000, 2),
    }


async def orchestrator_history(url: str) -> dict[str, int]:
    """Jobs that did not end Succeeded, or whose history is not complete (3 rows; 4 if delayed)."""
    query = sa.text(
        "SELECT count(*) AS jobs,"
        " count(*) FILTER (WHERE state <> 'Succeeded') AS not_succeeded,"
        " count(*) FILTER (WHERE n <> CASE WHEN delayed THEN 4 ELSE 3 END) AS bad_history"
        " FROM (SELECT j.id, j.state, count(h.id) AS n,"
        "       bool_or(h.state = 'Scheduled') AS delayed"
        "       FROM jobs j LEFT JOIN job_history h ON h.job_id = j.id"
        "       GROUP BY j.id, j.state) AS per_job"
    )
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(query)).one()
            version = (await conn.execute(sa.text("SHOW server_version"))).scalar_one()
    finally:
        await engine.dispose()
    return {"jobs": row.jobs, "not_succeeded": row.not_succeeded,
            "bad_history": row.bad_history, "postgresql": version}


def machine(python: Path) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, json; print(json.dumps("
         "{p: m.version(p) for p in ('dramatiq', 'pika', 'celery', 'kombu')}))"],
        capture_output=True, text=True, check=True,
    ).stdout
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "orchestrator_commit": commit,
        **json.loads(versions),
        "rabbitmq": asyncio.run(_rabbitmq_version()),
    }


async def _rabbitmq_version() -> str:
    connection = await aio_pika.connect(AMQP_URL)
    try:
        properties = connection.transport.connection.server_properties
        version = properties.get("version", b"?")
        return version.decode() if isinstance(version, bytes) else str(version)
    finally:
        await connection.close()


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and value >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value:g}{unit}"


def _ratio(ours: Any, theirs: dict[str, Any], higher_is_better: bool) -> str:
    known = {name: value for name, value in theirs.items() if isinstance(value, int | float)}
    if not isinstance(ours, int | float) or not known:
        return "—"
    pick = max if higher_is_better else min
    best = pick(known, key=lambda name: known[name])
    if known[best] == 0:
        return "—"
    return f"{ours / known[best]:.2f}x {best}"


def rows(results: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, str], str]]:
    """(figure, value per system, ratio Orchestrator / best comparable peer)."""

    def line(label: str, workload: str, key: str, better: str, peers: tuple[str, ...] = PEERS,
             source: str | None = None, ours: str = "orchestrator",
             ) -> tuple[str, dict[str, str], str]:
        values = {s: results.get(source or workload, {}).get(s, {}).get(key) for s in PEERS}
        for system in ("orchestrator", "orchestrator-direct"):
            values[system] = results.get(workload, {}).get(system, {}).get(key)
        theirs = {p: values[p] for p in peers}
        if ours != "orchestrator":  # a row of the variant alone
            values = {s: values[s] if s == ours or s in peers else None for s in SYSTEMS}
        return label, {s: _fmt(v) for s, v in values.items()}, _ratio(
            values[ours], theirs, better == "higher")

    yield line("W1 per-job client, send (jobs/s)", "w1", "send_jobs_per_s", "higher",
               ("dramatiq-confirms", "celery"))
    yield line("W1 per call p50 (ms)", "w1", "call_p50_ms", "lower", ("dramatiq-confirms",))
    yield line("W1 per call p99 (ms)", "w1", "call_p99_ms", "lower", ("dramatiq-confirms",))
    yield line("W1 end to end (jobs/s)", "w1", "end_to_end_jobs_per_s", "higher")
    direct = "orchestrator-direct"
    yield line("W1 DirectClient, send (jobs/s)", "w1", "send_jobs_per_s", "higher",
               ("dramatiq-confirms", "celery"), ours=direct)
    yield line("W1 DirectClient per call p50 (ms)", "w1", "call_p50_ms", "lower",
               ("dramatiq-confirms",), ours=direct)
    yield line("W1 DirectClient per call p99 (ms)", "w1", "call_p99_ms", "lower",
               ("dramatiq-confirms",), ours=direct)
    yield line("W1 DirectClient end to end (jobs/s)", "w1", "end_to_end_jobs_per_s", "higher",
               ours=direct)
    yield line("W1-bulk enqueue_many, end to end (jobs/s; peers: their W1)", "w1-bulk",
               "end_to_end_jobs_per_s", "higher", ("dramatiq", "celery"), source="w1")
    yield line("W1d drain of a backlog (jobs/s)", "w1d", "drain_jobs_per_s", "higher")
    yield line("W2 send→start p50 (ms)", "w2", "p50_ms", "lower")
    yield line("W2 send→start p99 (ms)", "w2", "p99_ms", "lower")
    yield line("W2 send→start max (ms)", "w2", "max_ms", "lower")
    yield line("W2 rate achieved (jobs/s)", "w2", "achieved_rate", "higher")
    yield line("W2 DirectClient send→start p50 (ms)", "w2", "p50_ms", "lower", ours=direct)
    yield line("W2 DirectClient send→start p99 (ms)", "w2", "p99_ms", "lower", ours=direct)
    yield line("W3 burst due at once, lateness p50 (ms)", "w3", "p50_ms", "lower")
    yield line("W3 burst due at once, lateness p99 (ms)", "w3", "p99_ms", "lower")
    yield line("W3 time to send the burst (s; due 5 s after the first)", "w3", "send_seconds",
               "lower")
    for d in ("6", "3", "0.5"):
        yield line(f"W3b mixed, {d} s class p99 (ms)", "w3b", f"p99_ms_{d}s", "lower")
    yield line("W3b mixed, all classes p99 (ms)", "w3b", "p99_ms_all", "lower")
    yield line("W3b mixed, share > 100 ms late", "w3b", "share_late_100ms", "lower")


def table(results: dict[str, dict[str, Any]]) -> str:
    header = ["figure", *SYSTEMS, "Orchestrator / best peer"]
    body = [[label, *(values[s] for s in SYSTEMS), ratio] for label, values, ratio in rows(results)]
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Orchestrator beside Dramatiq and Celery on the same broker, in one run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="N for W1, W1-bulk and W1d")
    parser.add_argument("--rate", type=float, default=200.0, help="W2: jobs per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="W2: how long")
    parser.add_argument("--burst", type=int, default=500, help="W3: jobs due at once")
    parser.add_argument("--mixed", type=int, default=200, help="W3b: jobs per delay class")
    parser.add_argument("--quick", action="store_true",
                        help="smoke-run sizes: 1,000 jobs, W2 for 3 s, W3 100, W3b 50 per class")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated subset of " + ",".join(WORKLOADS))
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help="comma-separated subset of " + ",".join(SYSTEMS))
    parser.add_argument("--concurrency", type=int, default=256,
                        help="Orchestrator worker slots (async no-op jobs)")
    parser.add_argument("--threads", type=int, default=8,
                        help="peer worker threads (one worker process each)")
    parser.add_argument("--venv", type=Path, default=Path("/tmp/orch-peers-venv"),
                        help="throwaway environment for the peers")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.seconds, args.burst, args.mixed = 1000, 3.0, 100, 50
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # so the processes, queues and database are cleaned up


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    args = parse_args()
    python = ensure_venv(args.venv)
    wanted = args.systems.split(",")
    workloads = [w for w in args.workloads.split(",") if w in WORKLOADS]
    info = machine(python)
    say(f"machine: {json.dumps(info)}")
    work = Path(tempfile.mkdtemp(prefix="orch-peers-"))
    peers: dict[str, Peer] = {}
    queues: list[str] = []
    system: System | None = None
    db_name = ""
    try:
        if any(peer_of(name) == "orchestrator" for name in wanted):
            peers["orchestrator"], system, db_name = orchestrator_peer(work, args.concurrency)
        for name in ("dramatiq", "celery"):
            if any(peer_of(system) == name for system in wanted):
                peers[name], more = external_peer(name, python, work, args.threads)
                queues += more
        bench = Bench(args, peers, args.rate)
        for name, peer in peers.items():  # warm up, and wait until every worker consumes
            bench.produce(peer, name, "w1", 20, "warm")
            bench.wait(peer, {"warm": 20}, 120)
        for index, workload in enumerate(workloads):
            order = [s for s in SYSTEMS if s in wanted and workload in PLAYS[s]]
            shift = index % max(1, len(order))
            for name in order[shift:] + order[:shift]:
                bench.run(workload, name)
        results: dict[str, Any] = dict(bench.results)
        if system is not None:
            results["orchestrator_store"] = asyncio.run(orchestrator_history(system.database_url))
        info["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        results["lost_or_twice"] = {
            f"{s}:{t}": n - peers[peer_of(s)].notes.count(t)
            for (s, t), n in bench.sent.items()
            if n != peers[peer_of(s)].notes.count(t)
        }
        results["machine"] = info
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            print(table(results))
            print(f"\nmachine: {json.dumps(info)}")
            print(f"store: {json.dumps(results.get('orchestrator_store'))}")
            print(f"lost or run twice: {json.dumps(results['lost_or_twice']) or 'none'}")
    finally:
        for name, peer in peers.items():
            if name != "orchestrator":
                with contextlib.suppress(Exception):
                    peer.stop_worker()
        if system is not None:
            system.stop_all()
            drop_postgres_database(db_name)
        asyncio.run(_delete_queues(queues))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
