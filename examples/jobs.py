"""A tiny job module: run it with `make dev` (ORCHESTRATOR_JOBS=examples.jobs is the default)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

from orchestrator import JobContext, job


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
    """A long job that stops early when it is deleted or its worker shuts down."""
    for remaining in range(seconds, 0, -1):
        if ctx.cancelled.wait(1.0):
            return remaining
    return 0
