"""Where a job's CPU goes: each process's CPU time per job, by role, on two workloads.

    python -m bench.cpu [--jobs 3000] [--json]

On a machine with two cores the Orchestrator processes, PostgreSQL, RabbitMQ and the producer
share the CPU, so what one job costs in all of them together bounds every figure of
``bench.peers``: a producer sending one job at a time waits for the API, whose turn waits for
the worker's. This starts the API, worker (``--concurrency 256``) and scheduler as in
``bench.peers`` (fresh PostgreSQL database, the same job body) and reads ``/proc`` around:

- W1: one producer (``bench.marks``, ``Client.enqueue``) sending N jobs one call at a time,
  until every job has started;
- W1d: a drain of N jobs queued by ``enqueue_many`` while the worker was stopped, from the
  first job started until the last (per job: over the N - 1 after the first).

It prints, per workload, milliseconds of CPU per job (user + system) of the API, the worker,
the scheduler, the producer, and every ``postgres`` and ``beam.smp`` process of the machine
(those two are shared: another database's work on the same server counts too, so run it on a
quiet machine). Lower is better; the sum, divided by the cores, bounds the jobs per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.peers import Notes, _queue_depth
from tests.support.system import (
    ROOT,
    System,
    cpu_seconds,
    drop_postgres_database,
    new_postgres_database,
)

TICKS = os.sysconf("SC_CLK_TCK")
#: Processes counted by name: the database server's and the broker's, whoever they serve.
SHARED = {"postgres": ("postgres",), "rabbitmq": ("beam.smp", "erl_child_setup")}


def shared_cpu() -> dict[str, float]:
    """CPU seconds of every process of each shared server, summed by server."""
    totals = dict.fromkeys(SHARED, 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        for server, names in SHARED.items():
            if name.startswith(names):
                fields = raw.rsplit(")", 1)[1].split()
                totals[server] += (int(fields[11]) + int(fields[12])) / TICKS
    return totals


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """CPU of the roles, the producer (children of this process) and the shared servers."""

    def __init__(self, system: System) -> None:
        self.system = system

    def read(self) -> dict[str, float]:
        roles = {n: cpu_seconds(p.pid) or 0.0 for n, p in self.system.processes.items()}
        return {**roles, "producer": children_cpu(), **shared_cpu()}

    @staticmethod
    def per_job(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
        spent = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
        spent["total"] = sum(spent.values())
        return {key: round(seconds / n * 1000, 3) for key, seconds in spent.items()}


def wait_for(notes: Notes, tag: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while notes.count(tag) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {notes.count(tag)} of {n} jobs started")
        time.sleep(0.05)


def produce(system: System, workload: str, n: int, tag: str) -> None:
    command = [sys.executable, "-m", "bench.marks", "orchestrator", workload, str(n),
               "--tag", tag, "--url", system.api_url]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def w1(system: System, meter: Meter, notes: Notes, n: int) -> dict[str, float]:
    before = meter.read()
    produce(system, "w1", n, "w1")
    wait_for(notes, "w1", n, 120 + n / 20)
    return meter.per_job(before, meter.read(), n)


def w1d(system: System, meter: Meter, notes: Notes, n: int, concurrency: int) -> dict[str, float]:
    system.stop("worker")
    produce(system, "w1d", n, "w1d")
    deadline = time.monotonic() + 60
    queue = f"{system.namespace}.q.default"
    while asyncio.run(_queue_depth(queue)) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    system.start("worker", "worker", "--concurrency", str(concurrency))
    wait_for(notes, "w1d", 1, 300)  # from the first job started: not the worker's start-up
    before = meter.read()
    wait_for(notes, "w1d", n, 120 + n / 20)
    after = meter.read()
    after.pop("producer")  # the producer ran before the drain
    before.pop("producer")
    return meter.per_job(before, after, n - 1)


def table(results: dict[str, dict[str, float]]) -> str:
    columns = ["api", "worker", "scheduler", "producer", "postgres", "rabbitmq", "total"]
    lines = ["CPU ms per job | " + " | ".join(columns)]
    lines.append("---|" + "|".join("---:" for _ in columns))
    for workload, spent in results.items():
        cells = [f"{spent[c]:.3f}" if c in spent else "—" for c in columns]
        lines.append(f"{workload} | " + " | ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=3000, help="N for W1 and W1d")
    parser.add_argument("--concurrency", type=int, default=256, help="the worker's slots")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="orch-cpu-"))
    db_name, url = new_postgres_database()
    out = work / "marks.out"
    system = System(database_url=url, jobs="bench.jobs", extra_env={"PEERS_OUT": str(out)},
                    log_dir=work)
    results: dict[str, Any] = {}
    try:
        system.start("api", "api")
        system.start("scheduler", "scheduler")
        system.start("worker", "worker", "--concurrency", str(args.concurrency))
        system.wait_for_api(timeout=300)
        system.wait_for_catalog("bench.mark", timeout=300)
        notes = Notes(out)
        meter = Meter(system)
        produce(system, "w1", 200, "warm")  # connections, prepared statements, caches
        wait_for(notes, "warm", 200, 120)
        results["W1 one at a time"] = w1(system, meter, notes, args.jobs)
        results["W1d drain"] = w1d(system, meter, notes, args.jobs, args.concurrency)
        results["load_average"] = list(os.getloadavg())
    finally:
        system.stop_all()
        drop_postgres_database(db_name)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        load = results.pop("load_average", None)
        print(table(results))
        print(f"\nload average at the end: {load}")


if __name__ == "__main__":
    main()
