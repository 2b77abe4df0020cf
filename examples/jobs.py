"""A tiny job module: run it with `make dev` (ORCHESTRATOR_JOBS=examples.jobs is the default)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

from orchestrator import JobContext, JobInterrupted, job


@job
def greet(name: str, greeting: str = "Hello") -> str:
    """A plain function becomes a job; its name is "examples.jobs.greet"."""
    return f"{greeting}, {name}!"


@job(name="reports.daily", queue="default", retries=3)
async def daily_report(recipients: list[str], day: date | None = None) -> dict[str, object]:
    """Async jobs run on the worker's event loop.

    A recurring job's arguments are fixed when it is registered, so the day to report on is
    read when the job runs (``day`` is there for a rerun of a past day).
    """
    await asyncio.sleep(0.1)
    reported = day or datetime.now(UTC).date()
    return {"day": reported.isoformat(), "sent_to": len(recipients)}


@job(name="examples.countdown")
def countdown(seconds: int, ctx: JobContext) -> int:
    """A long job that stops early when it is deleted, and asks to run again later when its
    worker shuts down.

    ``ctx.cancelled`` is set when the job is deleted (or its timeout passed): stop, nothing more
    of this run is recorded. ``ctx.shutting_down`` is set at the worker's first SIGTERM or
    Ctrl-C: finish within ``ORCHESTRATOR_WORKER_SHUTDOWN_GRACE_SECONDS`` (30 s) and the result is
    recorded as usual, or raise ``JobInterrupted`` to be run again later without spending a
    retry. A job still running when the grace ends (or at a second Ctrl-C) is handed back and
    the worker process ends at once.
    """
    for remaining in range(seconds, 0, -1):
        if ctx.cancelled.wait(1.0):
            return remaining
        if ctx.shutting_down.is_set():
            raise JobInterrupted(f"{remaining} s left; run again after the restart")
    return 0
