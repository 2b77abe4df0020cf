"""Jobs for the retry, timeout and filter tests (short delays: tests stay fast)."""

from __future__ import annotations

import asyncio
import os
import time

from orchestrator import JobContext, JobInterrupted, job


@job(name="retry.flaky", retries=2, retry_delays=[1, 1])
def flaky(ctx: JobContext) -> int:
    if ctx.attempt < 2:
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return ctx.attempt


@job(name="retry.always", retries=2, retry_delays=[1])
def always(message: str) -> None:
    raise RuntimeError(message)


@job(name="retry.only_connection", retries=3, retry_delays=[1], retry_on=(ConnectionError,))
def only_connection(kind: str) -> None:
    raise ConnectionError(kind) if kind == "connection" else ValueError(kind)


@job(name="retry.not_on_key", retries=3, retry_delays=[1], no_retry_on=(KeyError,))
def not_on_key() -> None:
    raise KeyError("missing")


@job(name="retry.ok", retries=1, retry_delays=[1])
def ok(value: int) -> int:
    return value


@job(name="timeout.async_sleep", retries=0, timeout=0.5)
async def async_sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "finished"


@job(name="timeout.sync_polite", retries=1, retry_delays=[1], timeout=0.5)
def sync_polite(seconds: float, ctx: JobContext) -> str:
    """Stops when its token fires; times out on the first attempt only."""
    if ctx.attempt > 1:
        return "second attempt"
    ctx.cancelled.wait(seconds)
    return "stopped early" if ctx.cancelled.is_set() else "finished"


@job(name="timeout.sync_stubborn", retries=0, timeout=0.5)
def sync_stubborn(seconds: float) -> str:
    """Ignores its token: runs on past its deadline and grace."""
    time.sleep(seconds)
    return "finished"


# -- process mode: run in a child process, killed at deadline plus grace ------------------


def _note(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


@job(name="process.echo", retries=0, timeout=30, isolation="process")
def process_echo(value: int) -> dict[str, int]:
    return {"value": value, "pid": os.getpid()}


@job(name="process.stubborn", retries=1, retry_delays=[1], timeout=0.5, isolation="process")
def process_stubborn(notes: str, ctx: JobContext) -> str:
    """Ignores its token: only a kill stops it."""
    _note(notes, f"start {ctx.attempt} {os.getpid()}")
    time.sleep(60)
    return "finished"


@job(name="process.polite", retries=0, timeout=0.5, isolation="process")
def process_polite(notes: str, ctx: JobContext) -> str:
    """Stops when its token fires (at the deadline, or on DELETE when it has no deadline)."""
    _note(notes, f"start {ctx.attempt} {os.getpid()}")
    if ctx.cancelled.wait(60):
        _note(notes, "cancelled")
        return "stopped"
    return "finished"


@job(name="process.polite_no_timeout", retries=0, isolation="process")
def process_polite_no_timeout(notes: str, ctx: JobContext) -> str:
    return process_polite.fn(notes, ctx)


@job(
    name="process.raises", retries=2, retry_delays=[1], no_retry_on=(KeyError,), isolation="process"
)
def process_raises(key: str) -> None:
    raise KeyError(key)


@job(name="process.sleeper", retries=0, isolation="process")
def process_sleeper(notes: str, ctx: JobContext) -> str:
    """No deadline, ignores its token: only a kill stops it."""
    _note(notes, f"start {ctx.attempt} {os.getpid()}")
    time.sleep(60)
    return "finished"


def _yield_at_shutdown(notes: str, ctx: JobContext) -> str:
    _note(notes, f"start {ctx.attempt} {os.getpid()}")
    if not ctx.shutting_down.wait(60):
        return "never told"
    _note(notes, f"shutting down, cancelled={ctx.cancelled.is_set()}")
    raise JobInterrupted("stopping for the shutdown; run me again")


@job(name="shutdown.yields", retries=2, retry_delays=[1])
def shutdown_yields(notes: str, ctx: JobContext) -> str:
    """Waits for its worker's shutdown, then asks to be run again later."""
    return _yield_at_shutdown(notes, ctx)


@job(name="shutdown.process_yields", retries=2, retry_delays=[1], isolation="process")
def shutdown_process_yields(notes: str, ctx: JobContext) -> str:
    return _yield_at_shutdown(notes, ctx)


@job(name="shutdown.finishes", retries=2, retry_delays=[1], isolation="process")
def shutdown_finishes(notes: str, ctx: JobContext) -> str:
    """Finishes its work once told of the shutdown: recorded as usual."""
    _note(notes, f"start {ctx.attempt} {os.getpid()}")
    ctx.shutting_down.wait(60)
    return "finished in the grace"


# -- attempts and tracebacks: each failed attempt's exception in its history row ----------


@job(name="attempts.twice_then_ok", retries=2, retry_delays=[1, 1])
def fails_twice(ctx: JobContext) -> str:
    if ctx.attempt <= 2:
        raise RuntimeError(f"attempt {ctx.attempt} failed")
    return f"succeeded on attempt {ctx.attempt}"


@job(name="attempts.async_raises", retries=0)
async def async_raises(message: str) -> None:
    await asyncio.sleep(0)
    raise LookupError(message)
