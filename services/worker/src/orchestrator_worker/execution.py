"""Running one claimed job: validate its arguments again, call it, and describe the outcome."""

from __future__ import annotations

import asyncio
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from pydantic_core import PydanticSerializationError, to_jsonable_python

from orchestrator import tracing
from orchestrator.catalog import Catalog, validate_with_model
from orchestrator.jobs import JobContext
from orchestrator_worker.claims import ClaimedJob


@dataclass(frozen=True)
class Outcome:
    job: ClaimedJob
    succeeded: bool
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    duration: float = 0.0


class UnknownJobNameError(Exception):
    """The job's name is not in this worker's catalog."""


class ResultNotSerializableError(Exception):
    """A job returned something JSON cannot hold."""


def failure(job: ClaimedJob, exc: BaseException, max_chars: int, duration: float) -> Outcome:
    text = "".join(traceback.format_exception(exc))
    if len(text) > max_chars:
        text = "…(truncated)\n" + text[-max_chars:]
    kind = type(exc)
    return Outcome(
        job,
        False,
        error_type=f"{kind.__module__}.{kind.__qualname__}",
        error_message=str(exc)[:4000],
        error_traceback=text,
        duration=duration,
    )


async def execute(
    job: ClaimedJob,
    catalog: Catalog,
    context: JobContext,
    threads: ThreadPoolExecutor,
    traceback_max_chars: int,
) -> Outcome:
    loop = asyncio.get_running_loop()
    started = loop.time()
    parent = tracing.context_from(job.trace_context)
    with tracing.tracer.start_as_current_span(
        f"run {job.name}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "orchestrator.job.id": str(job.job_id),
            "orchestrator.job.name": job.name,
            "orchestrator.queue": job.queue,
            "orchestrator.attempt": job.attempt,
        },
    ) as span:
        try:
            result = await _call(job, catalog, context, threads)
            value = _jsonable(result)
        except Exception as exc:
            span.record_exception(exc)
            return failure(job, exc, traceback_max_chars, loop.time() - started)
    return Outcome(job, True, result=value, duration=loop.time() - started)


async def _call(
    job: ClaimedJob, catalog: Catalog, context: JobContext, threads: ThreadPoolExecutor
) -> Any:
    function = catalog.get(job.name)
    if function is None:
        raise UnknownJobNameError(
            f"job {job.name!r} is not in this worker's catalog (ORCHESTRATOR_JOBS)"
        )
    arguments = validate_with_model(function, job.args, job.kwargs)
    if function.is_async:
        return await function.invoke(arguments, context)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(threads, function.invoke, arguments, context)


def _jsonable(value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as exc:
        raise ResultNotSerializableError(
            f"the job's return value cannot be stored: {exc}"
        ) from None


def new_context(job: ClaimedJob) -> JobContext:
    return JobContext(job_id=uuid.UUID(str(job.job_id)), attempt=job.attempt)
