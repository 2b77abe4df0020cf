"""Waiting for a fault scenario to drain for as long as it makes progress, and saying why not.

A loaded machine (CI runs the suite at load average ~10 on 2 cores) drains a scenario slowly,
not never: the broker-outage scenario ran 2,000 jobs in 150 s alone and needed more than 120 s
for the last 1,800 of them under load. So a drain is bounded by progress, like the readiness
waits of ``System.wait_until_ready``: it fails when no job has changed state for
``STALL_SECONDS`` (stuck, not slow), with a last-resort limit.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.faults.scenario import job_states

#: No job changed state for this long: the scenario is stuck (longer than any pause it may
#: take by design: the relay backs off for at most 30 s). A loaded machine still runs a
#: few jobs a second; a stall runs none at all.
STALL_SECONDS = float(os.environ.get("ORCHESTRATOR_FAULTS_STALL_SECONDS", "90"))
#: The longest a drain lasts while jobs keep moving (a last resort).
DRAIN_LIMIT_SECONDS = float(os.environ.get("ORCHESTRATOR_FAULTS_DRAIN_LIMIT_SECONDS", "900"))
#: How much of each role's log a failure shows (the whole log stays in the test's tmp dir).
LOG_TAIL_CHARS = 6000


@dataclass
class Drain:
    """How a drain ended: the last states read, and for how long nothing had moved."""

    states: dict[str, str]
    #: Seconds since a job last changed state (0 when every job was done).
    idle_s: float
    elapsed_s: float

    def summary(self) -> str:
        counts = dict(Counter(self.states.values()))
        return f"{counts}; no job changed state for the last {self.idle_s:.0f} s"


def wait_while_progressing(
    database_url: str,
    job_ids: list[str],
    done: tuple[str, ...],
    stall: float = STALL_SECONDS,
    limit: float = DRAIN_LIMIT_SECONDS,
) -> Drain:
    """Poll until every job of ``job_ids`` is in one of ``done``; give up once no job has
    changed state for ``stall`` seconds, or after ``limit``."""
    started = last_change = time.monotonic()
    states: dict[str, str] = {}
    while True:
        now = time.monotonic()
        try:
            current = job_states(database_url)
        except Exception:  # the store may be down in an outage scenario
            current = states
        if current != states:
            states, last_change = current, now
        if all(states.get(job_id) in done for job_id in job_ids):
            return Drain(states, 0.0, now - started)
        if now - last_change > stall or now - started > limit:
            return Drain(states, now - last_change, now - started)
        time.sleep(0.5)


def role_logs(log_dir: Path, namespace: str, names: list[str]) -> str:
    """Where each role's whole log is, and its tail, for an assertion message."""
    parts = []
    for name in names:
        path = log_dir / f"{namespace}-{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        parts.append(f"--- {name}: {path} ({len(text)} chars) ---\n{text[-LOG_TAIL_CHARS:]}")
    return "\n".join(parts)
