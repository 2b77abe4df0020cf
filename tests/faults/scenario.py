"""What a fault test counts: executions and effects per job, end states, and the report line."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from orchestrator import Client, JobCall
from orchestrator.db import create_engine
from orchestrator.store import jobs_table
from tests.support.system import ROOT

REPORT = Path(os.environ.get("ORCHESTRATOR_FAULTS_REPORT", ROOT / "artifacts" / "faults.jsonl"))
#: States in which a job is still on its way; none may remain once a scenario has drained.
UNFINISHED = ("Enqueued", "Processing", "Scheduled", "Awaiting")


class Effects:
    """Reads the per-job trace files written by ``tests.faults.jobs``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def lines(self, job_id: str) -> list[str]:
        path = self.directory / job_id
        return path.read_text().splitlines() if path.exists() else []

    def count(self, job_id: str, what: str) -> int:
        return sum(1 for line in self.lines(job_id) if line.startswith(what + " "))

    def executions(self, job_ids: list[str]) -> Counter[str]:
        return Counter({job_id: self.count(job_id, "start") for job_id in job_ids})

    def effects(self, job_ids: list[str]) -> Counter[str]:
        return Counter({job_id: self.count(job_id, "done") for job_id in job_ids})


def job_states(database_url: str) -> dict[str, str]:
    """Job id → state of every job in the store (read directly, not through the API)."""

    async def read() -> dict[str, str]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(sa.select(jobs_table.c.id, jobs_table.c.state))
                return {str(row.id): str(row.state) for row in rows}
        finally:
            await engine.dispose()

    return asyncio.run(read())


def wait_for_states(
    database_url: str, job_ids: list[str], done: tuple[str, ...], timeout: float
) -> dict[str, str]:
    """Poll until every job is in one of ``done`` (or the timeout); returns the last states."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            states = job_states(database_url)
        except Exception:  # the store may be down in an outage scenario
            time.sleep(0.5)
            continue
        if all(states.get(job_id) in done for job_id in job_ids):
            return states
        time.sleep(0.25)
    return states


def enqueue_effects(
    api_url: str, directory: Path, n: int, seconds: float = 0.0, queue: str | None = None
) -> list[str]:
    """Enqueue ``n`` effect jobs in one bulk request; returns their ids."""
    call = JobCall.named("faults.effect", directory=str(directory), seconds=seconds)
    options: dict[str, Any] = {"queue": queue} if queue else {}
    with Client(api_url, timeout=30) as client:
        return client.enqueue_many([(call, options)] * n)  # type: ignore[list-item]


@dataclass
class Outcome:
    """One scenario's figures, in the buckets docs/reliability.md reports."""

    scenario: str
    fault: str
    accepted: int
    completed: int
    lost: int
    stuck: int
    ran_twice: int
    effect_twice: int
    recovery_s: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def measure(
        cls,
        scenario: str,
        fault: str,
        job_ids: list[str],
        states: dict[str, str],
        effects: Effects,
        recovery_s: float | None,
        **extra: Any,
    ) -> Outcome:
        executions = effects.executions(job_ids)
        done = effects.effects(job_ids)
        return cls(
            scenario=scenario,
            fault=fault,
            accepted=len(job_ids),
            completed=sum(1 for j in job_ids if states.get(j) == "Succeeded"),
            # Lost: accepted, yet not in the store, or Succeeded without its effect ever done.
            lost=sum(
                1 for j in job_ids if j not in states or (states[j] == "Succeeded" and done[j] == 0)
            ),
            stuck=sum(1 for j in job_ids if states.get(j) in UNFINISHED),
            ran_twice=sum(1 for j in job_ids if executions[j] > 1),
            effect_twice=sum(1 for j in job_ids if done[j] > 1),
            recovery_s=None if recovery_s is None else round(recovery_s, 1),
            extra=extra,
        )

    def report(self) -> None:
        """Append one JSON line to artifacts/faults.jsonl (and print it, for ``-s`` runs)."""
        line = {**asdict(self), "machine": _machine(), "versions": _versions()}
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        with REPORT.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        print(json.dumps(line))


def _machine() -> str:
    return f"{platform.node()} {os.cpu_count()} CPU {platform.machine()}"


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    try:
        import aio_pika

        versions["aio_pika"] = aio_pika.__version__
    except Exception:  # pragma: no cover - informational only
        pass
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        versions["rabbitmq"] = out.stdout.strip()
    except OSError:
        pass
    return versions
