"""Process mode: a sync job run in a child process that is killed at its deadline plus grace.

Opt-in per job (``@job(isolation="process")``). In thread mode a sync job past its deadline
cannot be interrupted, so it keeps its slot until it returns; here the worker kills the child
(SIGKILL) ``grace`` seconds after the deadline, or after a cancellation (DELETE, lease lost), if
it has not returned by then. The run then fails with ``JobTimeoutError`` (a timeout) under the
retry policy; the next attempt can only start after the kill, so attempts never overlap.

The child is started with multiprocessing's ``forkserver`` context: forked from a small server
process that was itself started fresh and never had threads (the worker has threads and an asyncio
loop, which a plain ``fork`` would copy half-alive). It imports the job's module and finds the
job by its registered name; nothing is pickled but names, JSON arguments and the answer. Inside
the child ``ctx.cancelled`` and ``ctx.shutting_down`` are real ``threading.Event`` objects, set by
a thread that listens on a pipe from the worker: ``cancelled`` at the deadline and on DELETE,
``shutting_down`` when the worker begins to stop. At the end of the worker's grace period every
child is killed (:func:`kill_children`) before its job is handed back. If the worker itself dies,
the pipe closes: the child sets both and exits ``grace`` seconds later, so an orphan never runs
on beside the attempt that replaces it.

This module is the worker's side (start, supervise, kill); what runs in the child, and the
messages both sides exchange, are :mod:`.isolation_child`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import pickle
import threading
from collections.abc import Callable, Iterable
from multiprocessing import forkserver
from typing import TYPE_CHECKING, Any

from orchestrator import logs, tracing
from orchestrator.errors import JobTimeoutError
from orchestrator.jobs import JobContext, JobFunction
from orchestrator_worker import isolation_child
from orchestrator_worker.isolation_child import CANCEL, SHUTDOWN, Request, child_main

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from orchestrator_worker.claims import ClaimedJob

_FORKSERVER = multiprocessing.get_context("forkserver")
#: Imported once by the fork server, so a child starts in milliseconds, not the seconds that
#: importing ``orchestrator`` (jsonschema, pydantic, SQLAlchemy) takes: the child's own module.
_PRELOAD = [isolation_child.__name__]
#: A child must have imported the job and started it within this time, or it is killed.
_STARTUP_SECONDS = 60.0
#: ``_Child.next_message``: no message within the time given.
_NOTHING_YET = ("nothing yet", None)
#: How long joining a child that was killed or has answered may take before we stop waiting.
_JOIN_SECONDS = 5.0


class ChildJobError(Exception):
    """The job raised in its child process: its type, message and traceback, as the child saw
    them, and the exception itself when it could be carried back (for ``retry_on`` checks)."""

    def __init__(
        self, error_type: str, message: str, traceback_text: str, original: BaseException | None
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.traceback_text = traceback_text
        self.original = original


class ChildDiedError(Exception):
    """The child process ended without answering (it crashed or exited on its own)."""


def warm_up(functions: Iterable[JobFunction[Any, Any]]) -> None:
    """Start the fork server now if a job runs in process mode: its imports take seconds, which
    would otherwise delay the first such job (blocks briefly; call it off the event loop)."""
    global _stopped
    _stopped = False  # a worker starts (again, in tests): children may start
    if any(function.spec.isolation == "process" for function in functions):
        _FORKSERVER.set_forkserver_preload(_PRELOAD)
        forkserver.ensure_running()


async def run_in_process(
    function: JobFunction[Any, Any],
    job: ClaimedJob,
    context: JobContext,
    timeout: float | None,
    grace: float,
) -> Any:
    """Run ``function`` for ``job`` in a child process; its JSON-ready result, or raise."""
    if function.is_async:
        raise TypeError(f"job {function.name!r}: process mode is for sync jobs")
    module = function.fn.__module__
    if module == "__main__":
        raise TypeError(
            f"job {function.name!r}: process mode needs the job in an importable module"
        )
    request = Request(
        module,
        function.name,
        job.args,
        job.kwargs,
        str(job.job_id),
        job.attempt,
        grace,
        trace=tracing.current_headers(),
        logging=logs.configuration(),
    )
    child = _Child(request)
    loop = asyncio.get_running_loop()
    _children.add(child)
    try:
        await loop.run_in_executor(None, child.start)
        return await _supervise(child, context, timeout, grace)
    finally:
        # Also on cancellation: the child goes before the job can be claimed again.
        child.kill()
        await loop.run_in_executor(None, child.join)
        _children.discard(child)


#: Children started and not yet joined, for :func:`kill_children`.
_children: set[_Child] = set()
#: Held while a child starts, so none starts after :func:`kill_children` (``_stopped``).
_starting = threading.Lock()
_stopped = False


def kill_children() -> None:
    """Kill every job child of this worker, start no new one, and wait until each has ended
    (blocks; call it off the event loop): a shutdown does this before it hands their jobs back."""
    global _stopped
    with _starting:
        _stopped = True
        for child in list(_children):
            child.kill()
    for child in list(_children):
        child.wait_ended()


async def _supervise(
    child: _Child, context: JobContext, timeout: float | None, grace: float
) -> Any:
    """Wait for the child's answer; fire its token at the deadline or on cancellation, and
    kill it ``grace`` seconds after either if it has not answered by then.

    The deadline counts from the moment the job's code starts in the child (starting a process
    and importing the job's module is not the job's time), but a child that does not start
    within ``_STARTUP_SECONDS`` is killed too.
    """
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    _forward_cancellation(context, child, lambda: loop.call_soon_threadsafe(signalled.set))
    signal = asyncio.ensure_future(signalled.wait())
    startup_ends = loop.time() + _STARTUP_SECONDS
    deadline: float | None = None
    kill_at: float | None = None
    started = timed_out = False
    try:
        while True:
            now = loop.time()
            if signalled.is_set() and kill_at is None:
                kill_at = now + grace
            if deadline is not None and not timed_out and now >= deadline:
                timed_out = True
                context.cancelled.set()  # forwarded to the child
                kill_at = min(kill_at if kill_at is not None else now + grace, now + grace)
            if (kill_at is not None and now >= kill_at) or (not started and now >= startup_ends):
                child.kill()
                break
            limits = [kill_at, None if timed_out else deadline, None if started else startup_ends]
            until = min((t for t in limits if t is not None), default=None)
            message = await child.next_message(
                None if until is None else until - now, None if kill_at else signal
            )
            if message is _NOTHING_YET:
                continue
            if message is not None and message[0] == "started":
                started = True
                deadline = None if timeout is None else loop.time() + timeout
                continue
            if timed_out:
                break
            if message is None:
                await loop.run_in_executor(None, child.join)
                raise ChildDiedError(
                    f"the job's process exited with code {child.exitcode} without an answer"
                )
            return _unpack(message)
    finally:
        signal.cancel()
    if timed_out:
        raise _timed_out(timeout)
    if not started:
        raise ChildDiedError(f"the job's process did not start within {_STARTUP_SECONDS:g} s")
    raise ChildDiedError(f"the job's process was killed {grace:g} s after it was cancelled")


def _forward_cancellation(context: JobContext, child: _Child, wake: Callable[[], object]) -> None:
    """Make setting the job's events also set the child's, wherever they are set from; only a
    cancellation starts the countdown to the kill (``wake``)."""
    cancelled, shutting_down = context.cancelled.is_set(), context.shutting_down.is_set()

    def on_cancel() -> None:
        child.send(CANCEL)
        wake()

    context.cancelled = _NotifyingEvent(on_cancel)
    context.shutting_down = _NotifyingEvent(lambda: child.send(SHUTDOWN))
    if cancelled:
        context.cancelled.set()
    if shutting_down:
        context.shutting_down.set()


class _NotifyingEvent(threading.Event):
    def __init__(self, on_set: Callable[[], object]) -> None:
        super().__init__()
        self._on_set = on_set

    def set(self) -> None:
        super().set()
        self._on_set()


def _unpack(message: tuple[str, Any]) -> Any:
    kind, payload = message
    if kind == "ok":
        return payload
    error_type, text, trace, pickled = payload
    original = None
    if pickled is not None:
        with contextlib.suppress(Exception):
            original = pickle.loads(pickled)  # noqa: S301 - our own child, our own job code
    raise ChildJobError(
        error_type, text, trace, original if isinstance(original, BaseException) else None
    )


def _timed_out(timeout: float | None) -> JobTimeoutError:
    return JobTimeoutError(f"the job ran past its timeout of {timeout:g} s")


class _Child:
    """One child process and the two pipes to it (cancellation in, answer out)."""

    def __init__(self, request: Request) -> None:
        _FORKSERVER.set_forkserver_preload(_PRELOAD)  # read when the server first starts
        self._cancel_in, self._cancel_out = _FORKSERVER.Pipe(duplex=False)
        self._answer_in, self._answer_out = _FORKSERVER.Pipe(duplex=False)
        self._process: BaseProcess = _FORKSERVER.Process(
            target=child_main,
            args=(request, self._cancel_in, self._answer_out),
            name=f"job-{request.job_id}",
            daemon=True,  # never outlives the worker
        )
        self._sent: set[str] = set()
        self._pipe_lock = threading.Lock()

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    def start(self) -> None:
        with _starting:
            if _stopped:
                raise ChildDiedError("the worker is shutting down; the job's process not started")
            self._process.start()
        # The child holds its ends now; closing ours lets EOF say "the other side is gone".
        self._cancel_in.close()
        self._answer_out.close()

    async def next_message(
        self, timeout: float | None, interrupt: asyncio.Future[Any] | None
    ) -> tuple[str, Any] | None:
        """The child's next message; None once it has ended without one; ``_NOTHING_YET``
        after ``timeout`` seconds (None: no limit) or when ``interrupt`` is done first."""
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        fd = self._answer_in.fileno()

        def on_readable() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, on_readable)
        try:
            waiting = {readable} if interrupt is None else {readable, interrupt}
            await asyncio.wait(
                waiting,
                timeout=None if timeout is None else max(0.0, timeout),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            loop.remove_reader(fd)
            readable.cancel()
        if not self._answer_in.poll():
            return _NOTHING_YET
        try:
            message: tuple[str, Any] = self._answer_in.recv()
        except (EOFError, OSError):
            return None
        return message

    def send(self, message: str) -> None:
        """Tell the child once (the events may be set from any thread)."""
        with self._pipe_lock:
            if message in self._sent:
                return
            self._sent.add(message)
            with contextlib.suppress(OSError, ValueError):
                self._cancel_out.send(message)

    def kill(self) -> None:
        if self._process.pid is not None and self._process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    def wait_ended(self) -> None:
        if self._process.pid is not None:
            with contextlib.suppress(Exception):
                self._process.join(_JOIN_SECONDS)

    def join(self) -> None:
        self.wait_ended()
        with self._pipe_lock:
            for connection in (self._cancel_out, self._answer_in):
                connection.close()
