"""The checks of a chaos run (:mod:`tests.faults.chaos`) and its summary table.

Read after every role has exited: the store (every job, dead letters, PostgreSQL's deadlock
counter), the per-job mark files the jobs wrote, what the clients were told and every process's
life. Each check yields a list of violations, each naming the job or occurrence and what was seen.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import create_engine
from orchestrator.models import DeadLetter
from orchestrator.store import jobs_table
from tests.faults.chaos import FINAL, Run
from tests.faults.chaos_clients import Sent
from tests.faults.chaos_fleet import STOP_LIMIT
from tests.faults.chaos_recovery import Recovery, recovery
from tests.faults.scenario import REPORT

_dead_letters = DeadLetter.__table__  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Attempts, from the mark files


@dataclass(frozen=True)
class Attempt:
    job_id: str
    attempt: int
    pid: int
    start: float
    #: The end mark, if the attempt wrote one.
    end: float | None
    #: When the attempt's code stopped at the latest: its end mark, else its process's exit.
    until: float


def _parse(line: str) -> tuple[str, int, int, float] | None:
    try:
        what, *pairs = line.split()
        values = dict(pair.split("=", 1) for pair in pairs)
        return what, int(values["attempt"]), int(values["pid"]), float(values["t"])
    except (ValueError, KeyError):
        return None  # a line cut by kill -9


def read_attempts(marks: Path, exits: dict[int, float]) -> dict[str, list[Attempt]]:
    """Job id → its attempts by start time. An attempt without an end mark ran until its
    process exited (every process of the run has exited by now)."""
    attempts: dict[str, list[Attempt]] = {}
    for path in marks.iterdir():
        starts: list[tuple[int, int, float]] = []
        ends: dict[tuple[int, int], list[float]] = defaultdict(list)
        for line in path.read_text().splitlines():
            parsed = _parse(line)
            if parsed is None:
                continue
            what, attempt, pid, t = parsed
            if what == "start":
                starts.append((attempt, pid, t))
            elif what == "end":
                ends[(attempt, pid)].append(t)
        found = []
        for attempt, pid, t in sorted(starts, key=lambda s: s[2]):
            candidates = ends[(attempt, pid)]
            end = candidates.pop(0) if candidates else None
            until = end if end is not None else exits.get(pid, float("inf"))
            found.append(Attempt(path.name, attempt, pid, t, end, until))
        attempts[path.name] = found
    return attempts


def overlaps(attempts: list[Attempt]) -> list[tuple[Attempt, Attempt]]:
    """Pairs of attempts of one job whose code ran at the same time."""
    pairs = []
    for i, first in enumerate(attempts):
        for second in attempts[i + 1 :]:
            if second.start < first.until and first.start < second.until:
                pairs.append((first, second))
    return pairs


# --------------------------------------------------------------------------------------------
# The store


@dataclass(frozen=True)
class StoredJob:
    id: str
    state: str
    error_type: str | None
    key: str | None
    fail: bool
    tag: str
    recurring_id: str | None
    scheduled_for: datetime | None
    parent_id: str | None


@dataclass
class Store:
    jobs: dict[str, StoredJob]
    #: One line per row of ``dead_letters``: the job, RabbitMQ's reason, how many deaths.
    dead_letters: list[str]
    deadlocks: int


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def deadlocks(engine: AsyncEngine, name: str) -> int:
    async with engine.connect() as conn:
        value = (
            await conn.execute(
                sa.text("SELECT deadlocks FROM pg_stat_database WHERE datname = :name"),
                {"name": name},
            )
        ).scalar()
        return int(value or 0)


async def wait_for_no_backends(engine: AsyncEngine, name: str, timeout: float = 30) -> None:
    """PostgreSQL 15 flushes a backend's counters lazily (at latest when it exits): the deadlock
    counter is complete once no role's backend is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            others = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
            ).scalar()
        if not others:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"backends of {name} still connected after {timeout:.0f} s")


async def read_store(database_url: str) -> Store:
    name = database_name(database_url)
    engine = create_engine(database_url, pool_size=1)
    try:
        await wait_for_no_backends(engine, name)
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(jobs_table))).mappings().all()
            letters = [
                f"job {row.job_id} from {row.source_queue}: {row.reason} x{row.death_count}"
                for row in await conn.execute(sa.select(_dead_letters))
            ]
        jobs = {
            str(row["id"]): StoredJob(
                id=str(row["id"]),
                state=str(row["state"]),
                error_type=row["error_type"],
                key=row["idempotency_key"],
                fail=bool(row["kwargs"].get("fail")),
                tag=str(row["kwargs"].get("tag", "")),
                recurring_id=row["recurring_id"],
                scheduled_for=row["scheduled_for"],
                parent_id=str(row["parent_id"]) if row["parent_id"] else None,
            )
            for row in rows
        }
        # A fresh connection: the counter as of now, not a snapshot cached earlier.
        await engine.dispose()
        return Store(jobs, letters, await deadlocks(engine, name))
    finally:
        await engine.dispose()


def read_deadlocks(database_url: str) -> int:
    async def read() -> int:
        engine = create_engine(database_url, pool_size=1)
        try:
            return await deadlocks(engine, database_name(database_url))
        finally:
            await engine.dispose()

    return asyncio.run(read())


# --------------------------------------------------------------------------------------------
# Checks


@dataclass
class Report:
    seed: int
    acked: int
    in_store: int
    indeterminate: int
    recovered: int
    requests: int
    retried: int
    attempts: int
    recurring_runs: int
    faults: list[Recovery]
    skipped_faults: int
    deadlocks: int
    dead_letters: int
    #: Seconds: start until ready, load (until the last client's last answer), settling, stop.
    phases: dict[str, float] = field(default_factory=dict)
    violations: dict[str, list[str]] = field(default_factory=dict)

    def table(self) -> str:
        lines = [
            f"chaos seed {self.seed}: {self.acked} jobs acknowledged ({self.requests} requests, "
            f"{self.retried} retried while the API was down; {self.indeterminate} cut off, "
            f"{self.recovered} of those in the store), {self.in_store} jobs in the store, "
            f"{self.attempts} attempts, {self.recurring_runs} recurring runs, "
            f"{len(self.faults)} faults ({self.skipped_faults} skipped: no ready target)",
            "  phases: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.phases.items()),
            f"  {'t (s)':>6}  {'fault':<26} {'target':<14} {'orphans':>7} {'re-run':>7} "
            f"{'takeover':>8} {'api back':>8} {'limit':>6} {'new work':>8} {'thruput':>7}",
        ]
        for r in self.faults:
            lines.append(
                f"  {r.at_s:6.1f}  {r.fault:<26} {r.target:<14} {r.orphans:7d} "
                f"{_s(r.rerun_s):>7} {_s(r.takeover_s):>8} {_s(r.api_back_s):>8} "
                f"{r.limit_s:6.0f} {_s(r.new_work_s):>8} {_s(r.throughput_back_s):>7}"
            )
        lines.append("  recovery by fault kind: " + self.recovery_by_kind())
        checks = [f"{name} {len(found)}" for name, found in self.violations.items()]
        lines.append("  violations: " + ", ".join(checks))
        for name, found in self.violations.items():
            for item in found[:10]:
                lines.append(f"    {name}: {item}")
            if len(found) > 10:
                lines.append(f"    {name}: ... {len(found) - 10} more")
        return "\n".join(lines)

    def recovery_by_kind(self) -> str:
        """Per fault kind: how many, and the range of the figure each is judged by."""
        kinds: dict[str, list[float | None]] = defaultdict(list)
        for r in self.faults:
            kinds[r.fault].append(r.recovered_s)
        parts = []
        for kind, figures in sorted(kinds.items()):
            known = sorted(f for f in figures if f is not None)
            span = f"{known[0]:.1f}-{known[-1]:.1f} s" if known else "nothing to recover"
            parts.append(f"{kind} x{len(figures)}: {span}")
        return "; ".join(parts) or "no faults"

    def failed(self) -> bool:
        return any(self.violations.values())

    def write(self) -> None:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        with REPORT.open("a") as handle:
            line = {"scenario": "chaos", **asdict(self)}
            line["violations"] = {k: len(v) for k, v in self.violations.items()}
            handle.write(json.dumps(line) + "\n")


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def evaluate(run: Run, store: Store, deadlocks_before: int) -> Report:
    exits = {i.pid: i.exited for i in run.fleet.incarnations if i.exited is not None}
    attempts = read_attempts(run.marks, exits)
    sent = run.ledger.sent
    tags = {job.tag for job in store.jobs.values()}
    recurring = [j for j in store.jobs.values() if j.recurring_id == run.recurring_id]
    failing = {job.id for job in store.jobs.values() if job.fail}
    faults = [recovery(run, f, attempts, failing) for f in run.injector.faults]
    violations = {
        "lost": check_lost(sent, store),
        "not final": [f"{j.id} {j.state}" for j in store.jobs.values() if j.state not in FINAL],
        "wrong final state": check_final_states(store, attempts),
        "overlapping attempts": check_overlaps(attempts),
        "dead letters": check_dead_letters(
            store.dead_letters, run.dead_queue, run.dead_queue_error
        ),
        "deadlocks": [f"pg_stat_database.deadlocks {deadlocks_before} -> {store.deadlocks}"]
        if store.deadlocks != deadlocks_before
        else [],
        "idempotent replays": check_replays(sent, store),
        "delayed early": check_delayed(sent, attempts),
        "continuation early": check_continuations(sent, attempts),
        "recurring": check_recurring(run, recurring),
        "client errors": list(run.ledger.errors),
        "slow stops": check_stops(run),
        "no recovery": [problem for r in faults if (problem := r.problem()) is not None],
    }
    return Report(
        seed=run.config.seed,
        acked=len(sent),
        in_store=len(store.jobs),
        indeterminate=len(run.ledger.indeterminate),
        recovered=sum(1 for tag in run.ledger.indeterminate if tag in tags),
        requests=run.ledger.requests,
        retried=run.ledger.retried,
        attempts=sum(len(a) for a in attempts.values()),
        recurring_runs=len(recurring),
        faults=faults,
        skipped_faults=len(run.injector.skipped),
        deadlocks=store.deadlocks - deadlocks_before,
        dead_letters=len(store.dead_letters) + run.dead_queue,
        phases={
            "start": run.load_began - run.began,
            "load": run.load_ended - run.load_began,
            "settle": run.settled_at - run.load_ended,
            "stop": run.stopped_at - run.settled_at,
        },
        violations=violations,
    )


def check_stops(run: Run) -> list[str]:
    return [
        f"{i.name} exited {i.exited - i.signalled:.1f} s after SIGTERM"
        for i in run.fleet.incarnations
        if i.signalled is not None and i.exited is not None and i.exited - i.signalled > STOP_LIMIT
    ]


def check_dead_letters(letters: list[str], depth: int, unreadable: str | None) -> list[str]:
    """Rows in ``dead_letters``, messages in the dead queue, or a dead queue that could not be
    read (which must not pass as empty)."""
    found = list(letters)
    if depth:
        found.append(f"{depth} messages left in the dead queue")
    if unreadable is not None:
        found.append(f"the dead queue could not be read: {unreadable}")
    return found


def check_lost(sent: list[Sent], store: Store) -> list[str]:
    return [f"{s.kind} job {s.job_id} acknowledged, not in the store" for s in sent
            if s.job_id not in store.jobs]  # fmt: skip


def check_final_states(store: Store, attempts: dict[str, list[Attempt]]) -> list[str]:
    """Succeeded with its effect done, or (jobs designed to fail) Failed with their own error."""
    wrong = []
    for job in store.jobs.values():
        if job.state not in FINAL:
            continue
        ended = [a for a in attempts.get(job.id, []) if a.end is not None]
        if job.fail:
            if job.state != "Failed" or not (job.error_type or "").endswith("ChaosFailureError"):
                wrong.append(f"{job.id} designed to fail: {job.state} ({job.error_type})")
        elif job.state != "Succeeded":
            wrong.append(f"{job.id} {job.state} ({job.error_type})")
        elif not ended:
            wrong.append(f"{job.id} Succeeded but no attempt ever ended")
    return wrong


def check_overlaps(attempts: dict[str, list[Attempt]]) -> list[str]:
    found = []
    for job_id, runs in attempts.items():
        for first, second in overlaps(runs):
            found.append(
                f"{job_id}: attempt {first.attempt} (pid {first.pid}, {first.start:.3f}-"
                f"{first.until:.3f}{'' if first.end else ' exit'}) and attempt {second.attempt} "
                f"(pid {second.pid}, from {second.start:.3f}) overlap by "
                f"{min(first.until, second.until) - second.start:.3f} s"
            )
    return found


def check_replays(sent: list[Sent], store: Store) -> list[str]:
    by_key = {job.key: job.id for job in store.jobs.values() if job.key}
    wrong = []
    for s in sent:
        if s.replay_id is not None and s.replay_id != s.job_id:
            wrong.append(f"key {s.key}: first {s.job_id}, repeated request {s.replay_id}")
        if s.key is not None and by_key.get(s.key) != s.job_id:
            wrong.append(f"key {s.key}: acknowledged {s.job_id}, store has {by_key.get(s.key)}")
    return wrong


def check_delayed(sent: list[Sent], attempts: dict[str, list[Attempt]]) -> list[str]:
    """No attempt of a delayed job before its due time (the store's, else sent + delay, which
    is earlier than the store's)."""
    early = []
    for s in sent:
        if s.delay is None or not attempts.get(s.job_id):
            continue
        due = s.due if s.due is not None else s.sent_at + s.delay
        first = attempts[s.job_id][0].start
        if first < due:
            early.append(f"{s.job_id}: started {due - first:.3f} s before its due time")
    return early


def check_continuations(sent: list[Sent], attempts: dict[str, list[Attempt]]) -> list[str]:
    early = []
    for s in sent:
        if s.parent is None or not attempts.get(s.job_id):
            continue
        # The parent's last attempt is the one that succeeded and released the child.
        parent = attempts.get(s.parent)
        first = attempts[s.job_id][0].start
        if not parent or parent[-1].end is None or first < parent[-1].end:
            early.append(f"{s.job_id} started before its parent {s.parent} ended")
    return early


def check_recurring(run: Run, runs: list[Any]) -> list[str]:
    """One run per occurrence: none twice, none missing between the first and the last (while a
    scheduler process was alive), and the loop still firing after the faults stopped."""
    found = []
    if not run.recurring_after_faults:
        found.append("no recurring run was scheduled after the faults stopped")
    times = Counter(j.scheduled_for for j in runs if j.scheduled_for is not None)
    found += [f"occurrence {t.isoformat()} has {n} jobs" for t, n in times.items() if n > 1]
    if not times:
        return [*found, "no recurring run at all"]
    period = timedelta(seconds=run.config.recurring_period)
    t, last = min(times), max(times)
    while t <= last:
        if t not in times and _scheduler_alive(run, t.timestamp()):
            found.append(f"occurrence {t.isoformat()} has no job")
        t += period
    return found


def _scheduler_alive(run: Run, at: float) -> bool:
    """A scheduler was ready at ``at``: announced in the store, not yet exited. (A missed
    occurrence is fired late by any ready scheduler within the recurring loop's grace of 15 s.)"""
    announced = run.watcher.announced
    return any(
        i.pid in announced and announced[i.pid] <= at and (i.exited is None or i.exited >= at)
        for i in run.fleet.incarnations
        if i.role == "scheduler"
    )
