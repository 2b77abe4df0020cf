"""Jobs for the crash-recovery tests: each run appends ``<attempt> <pid>`` to a file."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from orchestrator import JobContext, job


def _mark(path: str, ctx: JobContext) -> None:
    with Path(path).open("a") as handle:
        handle.write(f"{ctx.attempt} {os.getpid()}\n")


@job(name="tests.stall_first_run")
def stall_first_run(path: str, ctx: JobContext) -> int:
    """The first run hangs (its worker gets killed); later runs return their attempt."""
    _mark(path, ctx)
    if ctx.attempt == 1:
        time.sleep(300)
    return ctx.attempt


@job(name="tests.kill_own_worker")
def kill_own_worker(path: str, ctx: JobContext) -> None:
    """Every run kills the worker process running it."""
    _mark(path, ctx)
    os.kill(os.getpid(), signal.SIGKILL)


@job(name="tests.quick")
def quick(path: str, ctx: JobContext) -> int:
    """Marks its run and returns its attempt."""
    _mark(path, ctx)
    return ctx.attempt
