"""Jobs for the fault tests: each execution leaves a trace in a file named after its job id.

``<directory>/<job_id>`` gets one ``start`` line when an execution begins and one ``done`` line
when it completes its effect, so a test counts executions (starts) and effects (dones) per job.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from orchestrator import JobContext, JobInterrupted, job


def _mark(directory: str, ctx: JobContext, what: str) -> None:
    line = f"{what} attempt={ctx.attempt} pid={os.getpid()} t={time.time():.3f}\n"
    with Path(directory, str(ctx.job_id)).open("a") as handle:
        handle.write(line)
        handle.flush()


@job(name="faults.effect")
def effect(directory: str, ctx: JobContext, seconds: float = 0.0) -> str:
    """Start, wait ``seconds`` (giving up when the token fires: the job was deleted), then record
    the effect; a ``shutting_down`` line notes that the worker began to stop meanwhile."""
    _mark(directory, ctx, "start")
    deadline = time.monotonic() + seconds
    told = False
    while (left := deadline - time.monotonic()) > 0:
        if ctx.cancelled.wait(min(left, 0.05)):
            _mark(directory, ctx, "cancelled")
            return "cancelled"
        if not told and ctx.shutting_down.is_set():
            _mark(directory, ctx, "shutting_down")
            told = True
    _mark(directory, ctx, "done")
    return "done"


@job(name="faults.suicide", retries=0)
def suicide(directory: str, ctx: JobContext) -> None:
    """Kills the process that runs it, every time."""
    _mark(directory, ctx, "start")
    os._exit(1)


def _attempt_mark(directory: str, ctx: JobContext, what: str, run: str) -> None:
    line = f"{what} run={run} attempt={ctx.attempt} pid={os.getpid()} t={time.time():.6f}\n"
    with Path(directory, f"{ctx.job_id}.runs").open("a") as handle:
        handle.write(line)
        handle.flush()


@job(name="faults.marked", retries=5)
def marked(directory: str, ctx: JobContext, seconds: float = 0.0, yields: bool = False) -> str:
    """Marks its start and end (``tests.faults.overlaps`` reads them); runs ``seconds`` ignoring
    its tokens, as code that cannot be stopped does, unless ``yields``: then it raises
    ``JobInterrupted`` once its worker shuts down."""
    run = uuid.uuid4().hex[:12]
    _attempt_mark(directory, ctx, "start", run)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if yields and ctx.shutting_down.is_set():
            _attempt_mark(directory, ctx, "interrupted", run)
            raise JobInterrupted
        time.sleep(0.01)
    _attempt_mark(directory, ctx, "end", run)
    return "done"


class ChaosFailureError(Exception):
    """The designed failure of a chaos job enqueued with ``fail=True``."""


@job(name="faults.chaos")
def chaos(directory: str, ctx: JobContext, ms: int = 0, fail: bool = False, tag: str = "") -> str:
    """One job of the chaos run (``tests/faults/chaos.py``): a ``start`` and an ``end`` mark
    around ``ms`` milliseconds of work, then fail if asked to.

    The work ignores ``ctx.cancelled`` on purpose, as most real code does: a thread cannot be
    stopped, so whatever a shutdown does to the job, this attempt runs to its end mark (or to
    its process's death), and any other attempt that starts before then overlaps it.
    """
    _mark(directory, ctx, "start")
    time.sleep(ms / 1000)
    _mark(directory, ctx, "end")
    if fail:
        raise ChaosFailureError(f"designed failure of {tag or ctx.job_id}")
    return tag
