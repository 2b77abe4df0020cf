"""Attempts of a job from the start/end marks ``faults.marked`` writes, and which of them overlap.

An attempt without an end mark (its process ended it: a hand-back at the end of a grace period,
a kill) is taken to have run until its process exited, as the test observed that exit; the
observation comes after the exit, so the check errs on the side of seeing an overlap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Attempt:
    job_id: str
    run: str
    attempt: int
    pid: int
    start: float
    end: float | None

    def until(self, exits: dict[int, float]) -> float:
        if self.end is not None:
            return self.end
        # Still running when the test looked: its process is alive, so it runs on.
        return exits.get(self.pid, float("inf"))


def _fields(line: str) -> tuple[str, dict[str, str]]:
    what, *pairs = line.split()
    return what, dict(pair.split("=", 1) for pair in pairs)


def attempts(directory: Path, job_id: str) -> list[Attempt]:
    path = directory / f"{job_id}.runs"
    if not path.exists():
        return []
    starts: dict[str, dict[str, str]] = {}
    ends: dict[str, float] = {}
    for line in path.read_text().splitlines():
        what, fields = _fields(line)
        if what == "start":
            starts[fields["run"]] = fields
        else:  # end, interrupted: the job's code has returned or raised
            ends[fields["run"]] = float(fields["t"])
    return [
        Attempt(job_id, run, int(f["attempt"]), int(f["pid"]), float(f["t"]), ends.get(run))
        for run, f in starts.items()
    ]


def overlapping(
    directory: Path, job_ids: list[str], exits: dict[int, float]
) -> list[tuple[Attempt, Attempt]]:
    """Pairs of attempts of one job that ran at the same time."""
    found = []
    for job_id in job_ids:
        runs = sorted(attempts(directory, job_id), key=lambda a: a.start)
        for earlier, later in itertools.pairwise(runs):
            if later.start < earlier.until(exits):
                found.append((earlier, later))
    return found
