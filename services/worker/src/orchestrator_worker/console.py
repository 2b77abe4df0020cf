"""One WARNING line per attempt that did not succeed, once its outcome is committed: what a
developer watching the worker's terminal needs (job, attempt, error, what happens next).

With ``ORCHESTRATOR_LOG_FORMAT=json`` the same record carries the job's id and name as its
context fields and the rest as fields of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context

from orchestrator import logs, tracing
from orchestrator.errors import JobTimeoutError
from orchestrator.lifecycle import State
from orchestrator_worker.claims import ClaimedJob
from orchestrator_worker.execution import Outcome

log = logging.getLogger("orchestrator.jobs.outcomes")
#: Longest error message quoted in a line (the job's history keeps all of it).
_MESSAGE_MAX_CHARS = 200


def report(outcome: Outcome, state: State, delay_seconds: int | None) -> None:
    """Log a failed attempt that will be retried, or a job that has failed for good."""
    if state is State.SUCCEEDED:
        return
    job = outcome.job
    attempt, attempts = job.retries_used + 1, job.retries + 1
    timeout = _timed_out(outcome)
    fields = {
        "attempt": attempt,
        "attempts": attempts,
        "error_type": outcome.error_type,
        "timed_out": timeout,
        "state": state.value,
        "retry_in_seconds": delay_seconds,
    }
    plural = "" if attempt == 1 else "s"
    with _job_and_trace(job):
        if state is State.SCHEDULED:
            what = _timeout(job) if timeout else "failed"
            error = "" if timeout else f": {_error(outcome)}"
            log.warning(
                "job %s %s %s (attempt %d of %d)%s; retry in %d s",
                job.job_id, job.name, what, attempt, attempts, error, delay_seconds or 0,
                extra=fields,
            )  # fmt: skip
        elif timeout:
            log.warning(
                "job %s %s %s; failed for good after %d attempt%s",
                job.job_id, job.name, _timeout(job), attempt, plural, extra=fields,
            )  # fmt: skip
        else:
            log.warning(
                "job %s %s failed for good after %d attempt%s: %s",
                job.job_id, job.name, attempt, plural, _error(outcome), extra=fields,
            )  # fmt: skip


@contextmanager
def _job_and_trace(job: ClaimedJob) -> Iterator[None]:
    """Name the job and its trace (the one its run's span belongs to), as its own lines do."""
    token = context.attach(tracing.context_from(job.message_trace or job.trace_context))
    try:
        with logs.job_context(job.job_id, job.name):
            yield
    finally:
        context.detach(token)


def _timeout(job: ClaimedJob) -> str:
    return f"timed out after {job.timeout_seconds or 0:g} s"


def _timed_out(outcome: Outcome) -> bool:
    return isinstance(outcome.exception, JobTimeoutError) or (outcome.error_type or "").endswith(
        ".JobTimeoutError"
    )


def _error(outcome: Outcome) -> str:
    if outcome.succeeded:  # the store could not hold its result (the history says why)
        return "ResultNotStorable: its return value cannot be stored"
    kind = (outcome.error_type or "Error").rsplit(".", 1)[-1]
    message = " ".join((outcome.error_message or "").split())
    if len(message) > _MESSAGE_MAX_CHARS:
        message = message[:_MESSAGE_MAX_CHARS] + "…"
    return f"{kind}: {message}" if message else kind
