"""What a run's outcome asks for: the state it proposes and the columns written with it, before
the election filters have their say (the first of them, the retry election, turns ``Failed`` with
a retry left into ``Scheduled``: :func:`orchestrator.retries.elect_retry`).

Pure: the worker's recorder and :mod:`orchestrator.testing` write what this proposes through
:class:`~orchestrator.transitions.Transitions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from orchestrator import outcomes
from orchestrator.lifecycle import Election, JobView, State

#: The error columns of a job that succeeded.
_NO_ERROR: Final = {"error_type": None, "error_message": None, "error_traceback": None}


class Finished(Protocol):
    """A run that ended (the worker's ``Outcome``)."""

    @property
    def job(self) -> JobView: ...
    @property
    def succeeded(self) -> bool: ...
    @property
    def result(self) -> Any: ...
    @property
    def error_type(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def error_traceback(self) -> str | None: ...
    @property
    def duration(self) -> float: ...
    @property
    def exception(self) -> BaseException | None: ...


@dataclass(frozen=True)
class Bounds:
    """What an outcome may hold: results up to ``max_result_bytes`` of JSON, tracebacks up to
    ``traceback_max_chars`` (the settings of the same names)."""

    max_result_bytes: int = 1024 * 1024
    traceback_max_chars: int = 16_000


def propose(outcome: Finished, now: datetime, bounds: Bounds | None = None) -> Election:
    """The state an outcome asks for, before the election filters have their say. A result
    the store cannot hold makes the job fail with ``ResultNotStorable`` (never the batch)."""
    bounds = bounds or Bounds()
    if outcome.succeeded:
        try:
            result = outcomes.storable_result(outcome.result, bounds.max_result_bytes)
        except outcomes.ResultNotStorableError as exc:
            refused = f"the job's return value cannot be stored: {exc}"
            return _failed(outcome, now, bounds, outcomes.RESULT_NOT_STORABLE, refused, None, exc)
        # A Succeeded job has no error: earlier attempts' exceptions live in their own
        # history rows, so the job's error columns (the last failed attempt's) are cleared.
        return Election(
            outcome.job,
            State.SUCCEEDED,
            "Completed",
            now,
            values={"result": result, "finished_at": now, **_NO_ERROR},
            data={"duration": round(outcome.duration, 6)},
        )
    return _failed(
        outcome,
        now,
        bounds,
        outcome.error_type,
        outcome.error_message,
        outcome.error_traceback,
        outcome.exception,
    )


def _failed(
    outcome: Finished,
    now: datetime,
    bounds: Bounds,
    error_type: str | None,
    message: str | None,
    traceback: str | None,
    exception: BaseException | None,
) -> Election:
    # An exception's text is whatever the job put in it: NUL and lone surrogates are replaced
    # (PostgreSQL refuses the first, UTF-8 the second) and every part is bounded.
    kind = outcomes.clean_text(error_type, outcomes.ERROR_TYPE_MAX_CHARS)
    text = outcomes.clean_text(message, outcomes.ERROR_MESSAGE_MAX_CHARS)
    trace = outcomes.clean_text(traceback, bounds.traceback_max_chars, keep="tail")
    error = {"type": kind, "message": text, "traceback": trace}
    return Election(
        outcome.job,
        State.FAILED,
        f"{kind}: {text}"[:1000],
        now,
        values={
            "error_type": kind,
            "error_message": text,
            "error_traceback": trace,
            "finished_at": now,
        },
        # The attempt's own exception stays with the history row this failure writes (Failed,
        # or Scheduled when the retry election elects a retry): the job's columns keep only the
        # latest one.
        data={
            "attempt": outcome.job.attempt,
            "duration": round(outcome.duration, 6),
            "error": error,
        },
        exception=exception,
    )
