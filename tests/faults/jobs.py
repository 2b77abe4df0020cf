"""Jobs for the fault tests: each execution leaves a trace in a file named after its job id.

``<directory>/<job_id>`` gets one ``start`` line when an execution begins and one ``done`` line
when it completes its effect, so a test counts executions (starts) and effects (dones) per job.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from orchestrator import JobContext, job


def _mark(directory: str, ctx: JobContext, what: str) -> None:
    line = f"{what} attempt={ctx.attempt} pid={os.getpid()} t={time.time():.3f}\n"
    with Path(directory, str(ctx.job_id)).open("a") as handle:
        handle.write(line)
        handle.flush()


@job(name="faults.effect")
def effect(directory: str, ctx: JobContext, seconds: float = 0.0) -> str:
    """Start, wait ``seconds`` (giving up when the token fires), then record the effect."""
    _mark(directory, ctx, "start")
    if seconds and ctx.cancelled.wait(seconds):
        _mark(directory, ctx, "cancelled")
        return "cancelled"
    _mark(directory, ctx, "done")
    return "done"


@job(name="faults.suicide", retries=0)
def suicide(directory: str, ctx: JobContext) -> None:
    """Kills the process that runs it, every time."""
    _mark(directory, ctx, "start")
    os._exit(1)
