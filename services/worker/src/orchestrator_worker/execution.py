"""Running one claimed job: validate its arguments again, call it, and describe the outcome."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from pydantic_core import PydanticSerializationError, to_jsonable_python

from orchestrator import logs, tracing
from orchestrator.catalog import Catalog, validate_with_model
from orchestrator.errors import JobTimeoutError, JobValidationError
from orchestrator.filters import Filters, Performing
from orchestrator.jobs import JobContext
from orchestrator.outcomes import Unreadable
from orchestrator.redaction import redact
from orchestrator_worker.claims import ClaimedJob
from orchestrator_worker.isolation import ChildJobError, run_in_process
from orchestrator_worker.tracebacks import user_first

log = logging.getLogger(__name__)
#: Longest argument text put on a span (a large payload is cut, not shipped to the backend).
_ARGUMENTS_MAX_CHARS = 2000


@dataclass(frozen=True)
class Outcome:
    job: ClaimedJob
    succeeded: bool
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    duration: float = 0.0
    #: The failure itself, for the election filters (never stored).
    exception: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Limits:
    """How a run is bounded: the grace after a sync job's deadline before it is flagged as
    overrunning, and what flags it."""

    grace: float = 5.0
    on_overrun: Callable[[ClaimedJob], Awaitable[None]] | None = None


class UnknownJobNameError(JobValidationError):
    """The job's name is not in this worker's catalog."""


class ResultNotSerializableError(Exception):
    """A job returned something JSON cannot hold."""


def failure(job: ClaimedJob, exc: BaseException, max_chars: int, duration: float) -> Outcome:
    kind = type(exc)
    if isinstance(exc, ChildJobError):  # raised in a process-mode child: as the child saw it
        error_type, text = exc.error_type, exc.traceback_text
    else:
        error_type = f"{kind.__module__}.{kind.__qualname__}"
        # User-first: the worker's own frames before the job's code are folded into one line.
        text = _described(lambda: user_first(exc), kind)
    if len(text) > max_chars:
        text = "…(truncated)\n" + text[-max_chars:]
    # The message is sanitised and bounded where it is recorded (orchestrator.outcomes).
    return Outcome(
        job,
        False,
        error_type=error_type,
        error_message=_described(lambda: str(exc), kind),
        error_traceback=text,
        duration=duration,
        exception=exc.original if isinstance(exc, ChildJobError) and exc.original else exc,
    )


def _described(describe: Callable[[], str], kind: type[BaseException]) -> str:
    # An exception whose __str__ raises must still be recorded, or its job would never end.
    try:
        return describe()
    except Exception as exc:
        return f"<{kind.__qualname__} that cannot be shown: {type(exc).__name__}>"


async def execute(
    job: ClaimedJob,
    catalog: Catalog,
    context: JobContext,
    threads: ThreadPoolExecutor,
    traceback_max_chars: int,
    filters: Filters | None = None,
    limits: Limits | None = None,
) -> Outcome:
    """Run the job inside its filters' ``around`` hooks, bounded by its timeout."""
    loop = asyncio.get_running_loop()
    chain = filters or Filters()
    limits = limits or Limits()
    started = loop.time()
    # A child of the publish that delivered the job (the message's headers), else of the
    # context stored with the job.
    running = tracing.tracer.start_as_current_span(
        f"run {job.name}",
        context=tracing.context_from(job.message_trace or job.trace_context),
        kind=trace.SpanKind.CONSUMER,
        attributes=tracing.job_attributes(job.job_id, job.name, job.queue, job.attempt),
    )
    with running as span, logs.job_context(job.job_id, job.name):
        _show_arguments(job, catalog, span)
        try:
            result = await chain.perform(
                lambda: _call(job, catalog, context, threads, limits), Performing(job, context)
            )
            value = _jsonable(result)
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            return failure(job, exc, traceback_max_chars, loop.time() - started)
    return Outcome(job, True, result=value, duration=loop.time() - started)


def _show_arguments(job: ClaimedJob, catalog: Catalog, span: trace.Span) -> None:
    """The job's arguments, secret ones redacted, on its span and in a debug line."""
    function = catalog.get(job.name)
    if function is None:
        return
    args, kwargs = redact(function.parameter_names, function.json_schema, job.args, job.kwargs)
    shown = json.dumps({"args": args, "kwargs": kwargs}, default=str)[:_ARGUMENTS_MAX_CHARS]
    span.set_attribute("orchestrator.job.arguments", shown)
    log.debug("running %s attempt %d with %s", job.name, job.attempt, shown)


async def _call(
    job: ClaimedJob,
    catalog: Catalog,
    context: JobContext,
    threads: ThreadPoolExecutor,
    limits: Limits,
) -> Any:
    function = catalog.get(job.name)
    if function is None:
        raise UnknownJobNameError(
            f"job {job.name!r} is not in this worker's catalog (ORCHESTRATOR_JOBS)"
        )
    unreadable = [a for a in [*job.args, *job.kwargs.values()] if isinstance(a, Unreadable)]
    if unreadable:  # stored by an older version; the stored job keeps them as they are
        raise JobValidationError(f"the stored arguments cannot be read: {unreadable[0].reason}")
    arguments = validate_with_model(function, job.args, job.kwargs)
    timeout = job.timeout_seconds
    if function.spec.isolation == "process":
        return await run_in_process(function, job, context, timeout, limits.grace)
    if function.is_async:
        coroutine = function.invoke(arguments, context)
        assert asyncio.iscoroutine(coroutine)
        if timeout is None:
            return await coroutine
        try:
            async with asyncio.timeout(timeout):
                return await coroutine
        except TimeoutError:
            context.cancelled.set()
            raise _timed_out(timeout) from None
    loop = asyncio.get_running_loop()
    # A copy of this context, so the job's log lines and spans know their job and trace.
    run = contextvars.copy_context().run
    future = loop.run_in_executor(threads, run, function.invoke, arguments, context)
    if timeout is None:
        return await future
    return await _bounded(future, timeout, job, context, limits)


async def _bounded(
    future: asyncio.Future[Any],
    timeout: float,
    job: ClaimedJob,
    context: JobContext,
    limits: Limits,
) -> Any:
    """A sync job's run: its token fires at the deadline; it keeps its slot (and lease) until
    its thread returns, flagged as overrunning once past the deadline plus grace; whatever it
    returns then, the run failed with ``JobTimeoutError``, so its retry delay starts then."""
    done, _ = await asyncio.wait({future}, timeout=timeout)
    if done:
        return future.result()
    context.cancelled.set()
    done, _ = await asyncio.wait({future}, timeout=limits.grace)
    if not done and limits.on_overrun is not None:
        await limits.on_overrun(job)
    try:
        await future
    except Exception as exc:
        raise _timed_out(timeout) from exc
    raise _timed_out(timeout)


def _timed_out(timeout: float) -> JobTimeoutError:
    return JobTimeoutError(f"the job ran past its timeout of {timeout:g} s")


def _jsonable(value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise ResultNotSerializableError(
            f"the job's return value cannot be stored: {exc}"
        ) from None


def new_context(job: ClaimedJob) -> JobContext:
    return JobContext(job_id=uuid.UUID(str(job.job_id)), attempt=job.attempt)
