"""The worker of :class:`orchestrator.testing.InlineClient`: it takes the messages the system
would publish, in order, and for each claims the job, runs it in the calling thread and records
its outcome, as a worker does: the claim's columns (:mod:`orchestrator.store.claims`), the
outcome's state and columns (:func:`orchestrator.recording.propose`), the retry election
(:func:`orchestrator.retries.elect_retry`), all through the state machine. What differs: a
retry's message is taken at once (no back-off, no delay levels) and no timeout is enforced.
"""

from __future__ import annotations

import asyncio
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic_core import to_jsonable_python

from orchestrator import outbox, recording, retries
from orchestrator.catalog import validate_with_model
from orchestrator.db import db_now
from orchestrator.inline_store import InlineStore
from orchestrator.jobs import JobContext, JobFunction
from orchestrator.lifecycle import Change, RowChange, State
from orchestrator.outbox import Pending
from orchestrator.store import claims
from orchestrator.store.tables import Row
from orchestrator.transitions import Transitions

#: The name the jobs are claimed under, as a worker's id.
WORKER = "inline"
_LEASE = timedelta(hours=1)


class InlineWorker:
    def __init__(
        self,
        store: InlineStore,
        transitions: Transitions,
        function: Callable[[str], JobFunction[Any, Any]],
    ) -> None:
        self._store = store
        self._transitions = transitions
        self._function = function

    def deliver(self, pending: Sequence[Pending]) -> None:
        """Run every job the system would publish a message for, in order, as a worker would:
        claim it, run it here, record its outcome (which may publish more: a retry, the
        continuations its ending released)."""
        messages = deque(pending)
        while messages:
            claimed = self._store.run(self._claim(messages.popleft()))
            if claimed is not None:
                messages.extend(self._store.run(self._record(self._perform(claimed))))

    async def _claim(self, entry: Pending) -> _Claimed | None:
        """``Enqueued`` (or a retry: at once, inline) → ``Processing``, as a worker's claim."""
        async with self._store.engine.begin() as conn:
            now = await db_now(conn)
            await outbox.record_results(conn, [entry], [True])  # the message is taken
            rows = await self._transitions.move(
                conn,
                [entry.message.job_id],
                expected={State.ENQUEUED, State.SCHEDULED},
                target=State.PROCESSING,
                change=Change(
                    f"Started by {WORKER}",
                    values=claims.started(WORKER, now, now + _LEASE),
                    data={"worker": WORKER},
                ),
                now=now,
                returning=claims.CLAIMED_COLUMNS,
                elect=False,
            )
        return _Claimed.of(rows[0]) if rows else None

    def _perform(self, job: _Claimed) -> _Outcome:
        """Run the job in the calling thread, its arguments checked by the worker's model."""
        started = time.monotonic()
        try:
            function = self._function(job.name)
            arguments = validate_with_model(function, job.args, job.kwargs)
            context = JobContext(job_id=job.job_id, attempt=job.attempt)
            result = to_jsonable_python(call_job(function, arguments, context))
        except Exception as exc:
            kind = type(exc)
            return _Outcome(
                job,
                succeeded=False,
                error_type=f"{kind.__module__}.{kind.__qualname__}",
                error_message=str(exc),
                error_traceback="".join(traceback.format_exception(exc)),
                duration=time.monotonic() - started,
                exception=exc,
            )
        return _Outcome(job, succeeded=True, result=result, duration=time.monotonic() - started)

    async def _record(self, outcome: _Outcome) -> list[Pending]:
        """The outcome's state, or the retry election's choice, written as the worker's recorder
        writes it (guarded by the claim); returns the messages it adds."""
        job = outcome.job
        async with self._store.engine.begin() as conn:
            now = await db_now(conn)
            election = recording.propose(outcome, now)
            retries.elect_retry(election, self._function(job.name).spec.retry)
            change = Change(election.reason, election.values, election.data)
            guard = {"attempt": job.attempt, "worker_id": WORKER}
            moved = await self._transitions.move_each(
                conn,
                [RowChange(job.job_id, change, guard)],
                expected={State.PROCESSING},
                target=election.state,
                now=now,
                elect=False,
            )
            pending = list(moved.pending)
            if moved and election.delay_seconds is not None:
                retry = outbox.Publication(job.job_id, job.queue, {}, election.delay_seconds)
                pending += await outbox.add(conn, [retry], now)
        return pending


@dataclass(frozen=True)
class _Claimed:
    """A claimed job: what its run and its election read of it."""

    job_id: uuid.UUID
    name: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempt: int
    retries: int
    retries_used: int
    options: Mapping[str, Any]

    @classmethod
    def of(cls, row: Row) -> _Claimed:
        return cls(
            row.id, row.name, row.queue, list(row.args), dict(row.kwargs), row.attempt,
            row.retries, row.retries_used, dict(row.options or {}),
        )  # fmt: skip


@dataclass(frozen=True)
class _Outcome:
    """A run's outcome, as :func:`orchestrator.recording.propose` reads it."""

    job: _Claimed
    succeeded: bool
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    duration: float = 0.0
    exception: BaseException | None = None


def call_job(function: JobFunction[Any, Any], arguments: Any, context: JobContext) -> Any:
    """Call the job here; an async one on a fresh event loop (in a fresh thread when a loop is
    already running in this one)."""
    if not function.is_async:
        return function.invoke(arguments, context)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(function.invoke(arguments, context))  # type: ignore[arg-type]
    with ThreadPoolExecutor(max_workers=1) as thread:  # a loop runs here: use a fresh one
        return thread.submit(asyncio.run, function.invoke(arguments, context)).result()  # type: ignore[arg-type]
