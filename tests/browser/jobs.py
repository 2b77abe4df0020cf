"""Jobs the browser tests drive through the dashboard (the worker imports this module)."""

from __future__ import annotations

import time
from pathlib import Path

from orchestrator import JobContext, job


@job(name="browser.quick")
def quick(label: str) -> str:
    return f"done: {label}"


@job(name="browser.other")
def other(label: str) -> str:
    """A second name, so a filter by name has something to leave out."""
    return f"other: {label}"


@job(name="browser.flaky", retries=0)
def flaky(flag: str) -> str:
    """Fails until the file ``flag`` exists: a test fails it, fixes the world, then requeues."""
    if not Path(flag).exists():
        raise RuntimeError(f"flag file {flag} is missing")
    return "flag found"


@job(name="browser.hold")
def hold(marks: str, ctx: JobContext, seconds: float = 90.0) -> str:
    """Runs until cancelled; writes when it started and whether its token fired."""
    Path(marks).write_text(f"started {time.time()}\n")
    fired = ctx.cancelled.wait(seconds)
    with Path(marks).open("a") as handle:
        handle.write(f"{'cancelled' if fired else 'timeout'} {time.time()}\n")
    return "cancelled" if fired else "held to the end"
