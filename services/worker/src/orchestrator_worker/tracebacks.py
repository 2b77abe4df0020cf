"""User-first tracebacks: a job's exception as its author wants to read it.

A traceback caught by the worker starts in the worker's own frames (the run, the filters'
chain, the thread pool or the process-mode child, the catalog's call of the job) before it
reaches the job's code. Those leading frames are folded into one line saying how many there
were, so the first frame shown is the job's own (or a user filter's): the same for thread mode,
async jobs and process mode, and for every exception of a chain (``raise … from …``).

Only leading frames are folded: a framework frame the job's code called (``ctx.cancelled.wait``
in ``threading``) stays where it is. An exception raised by the framework itself (a timeout,
arguments that do not validate) has no frame of the job's code; its last frame, where it was
raised, is kept.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import threading
import traceback
from functools import cache
from typing import Any

import orchestrator
import orchestrator_worker


class _FoldedStack(traceback.StackSummary):
    """The frames left after folding, formatted after a line counting the folded ones."""

    folded = 0

    def format(self, *args: Any, **kwargs: Any) -> list[str]:
        plural = "" if self.folded == 1 else "s"
        note = f"  … {self.folded} framework frame{plural} folded\n"
        return [note, *super().format(*args, **kwargs)]


def user_first(exc: BaseException) -> str:
    """``exc``'s traceback as :func:`traceback.format_exception` writes it, with the leading
    framework frames of each exception in its chain folded into one line."""
    described = traceback.TracebackException.from_exception(exc)
    _fold_chain(described, set())
    return "".join(described.format())


def _fold_chain(described: traceback.TracebackException, seen: set[int]) -> None:
    if id(described) in seen:
        return
    seen.add(id(described))
    described.stack = _folded(described.stack)
    for nested in (described.__cause__, described.__context__, *(described.exceptions or ())):
        if nested is not None:
            _fold_chain(nested, seen)


def _folded(stack: traceback.StackSummary) -> traceback.StackSummary:
    frames = list(stack)
    leading = 0
    while leading < len(frames) - 1 and is_framework(frames[leading].filename):
        leading += 1
    if leading == 0:
        return stack
    folded = _FoldedStack(frames[leading:])
    folded.folded = leading
    return folded


def is_framework(filename: str) -> bool:
    """Whether a frame's file belongs to Orchestrator or the machinery that runs a job."""
    return filename.startswith(_framework_places())


@cache
def _framework_places() -> tuple[str, ...]:
    packages = (orchestrator, orchestrator_worker, asyncio, concurrent.futures, multiprocessing)
    folders = [_folder(package.__file__) for package in packages]
    return (*folders, threading.__file__)


def _folder(init_file: str | None) -> str:
    assert init_file is not None  # regular packages, never namespace ones
    return os.path.dirname(init_file) + os.sep
