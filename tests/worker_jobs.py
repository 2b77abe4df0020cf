"""Jobs used by the worker and end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from orchestrator import JobContext, job


@job(name="tests.add")
def add(a: int, b: int) -> int:
    return a + b


@job(name="tests.async_add")
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@job(name="tests.boom", retries=0)
def boom(message: str) -> None:
    raise ValueError(message)


@job(name="tests.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@job(name="tests.record", queue="default")
def record(path: str, label: str, seconds: float = 0.0) -> str:
    """Append ``label`` to a file, then sleep: lets tests see the order jobs started in."""
    with Path(path).open("a") as handle:
        handle.write(label + "\n")
    time.sleep(seconds)
    return label


@job(name="tests.whoami")
def whoami(ctx: JobContext) -> dict[str, object]:
    return {"job_id": str(ctx.job_id), "attempt": ctx.attempt, "pid": os.getpid()}


@job(name="tests.noop")
def noop() -> None:
    return None


@job(name="tests.until_cancelled")
def until_cancelled(path: str, seconds: float, ctx: JobContext) -> str:
    """Waits for its token; writes when it started and when the token fired."""
    Path(path).write_text(f"started {time.time()}\n")
    fired = ctx.cancelled.wait(seconds)
    with Path(path).open("a") as handle:
        handle.write(f"{'cancelled' if fired else 'timeout'} {time.time()}\n")
    return "returned after cancel" if fired else "finished"


@job(name="tests.async_forever")
async def async_forever(path: str) -> None:
    Path(path).write_text(f"started {time.time()}\n")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        with Path(path).open("a") as handle:
            handle.write(f"cancelled {time.time()}\n")
        raise
