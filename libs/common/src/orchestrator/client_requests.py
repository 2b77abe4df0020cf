"""What the clients send and how they read the answers: the request bodies and paths of every
method of :class:`~orchestrator.Client` and :class:`~orchestrator.AsyncClient` (built once here,
so the two clients and :class:`~orchestrator.testing.InlineClient` send the same thing), the
options each method takes, and the answers' errors. No I/O.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict
from urllib.parse import quote

import httpx

from orchestrator import bounds
from orchestrator.errors import ApiError, JobFailedError, JobNotFoundError
from orchestrator.jobs import JobCall, JobFunction
from orchestrator.lean_http import MAX_IDLE_SECONDS

JobId = str | uuid.UUID
Seconds = timedelta | float
ContinueOn = Literal["succeeded", "finished"]
JobDict = dict[str, Any]
IdList = list[str]

DEFAULT_TIMEOUT = 10.0
API = "/api/v1"


class EnqueueOptions(TypedDict, total=False):
    """The options every enqueueing method takes as keywords (never a job's arguments)."""

    queue: str | None  #: default: the job's own; another catalog job's queue or ORCHESTRATOR_QUEUES
    retries: int | None  #: re-runs allowed after the first failure; default: the job's own
    retry_delays: list[float] | None  #: seconds before retry 1, 2, … (the last repeats)
    timeout_seconds: float | None
    expire_after: Seconds | None  #: how long the job is kept once it has ended
    idempotency_key: str | None  #: the same key and body return the first job


class JobOptions(EnqueueOptions, total=False):
    """Everything one job of :meth:`Client.enqueue_many` may set: ``(call, {"delay": 5})``."""

    delay: Seconds | None
    run_at: datetime | None  #: timezone-aware
    continue_after: JobId | None
    continue_on: ContinueOn | None


BulkItem = JobCall | tuple[JobCall, JobOptions]
_ENQUEUE = frozenset(EnqueueOptions.__annotations__)
_ALL = frozenset(JobOptions.__annotations__)


def require_call(call: object, method: str) -> JobCall:
    """The first argument of every enqueueing method must be a bound call."""
    if isinstance(call, JobCall):
        return call
    if isinstance(call, JobFunction):
        raise TypeError(
            f"{method}() takes a JobCall, not the job function {call.name!r}: bind its "
            f"arguments first, e.g. {method}({call.fn.__name__}.call(...))"
        )
    raise TypeError(
        f"{method}() takes a JobCall (from fn.call(...) or JobCall.named(name, ...)), "
        f"not {type(call).__name__}"
    )


def _seconds(value: Seconds, name: str) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} takes seconds or a timedelta, not a boolean")
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"{name} must not be negative")
    if not seconds <= bounds.MAX_DURATION_SECONDS:  # NaN fails this too
        raise ValueError(f"{name} must be at most {bounds.MAX_DURATION_SECONDS} seconds")
    return seconds


def _check_options(options: Mapping[str, Any], allowed: frozenset[str], method: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"{method}() got unknown option(s) {unknown}; job arguments go in .call()")


def job_body(
    call: JobCall,
    options: Mapping[str, Any],
    method: str = "enqueue",
    allowed: frozenset[str] = _ENQUEUE,
) -> JobDict:
    """The JSON body of ``POST /api/v1/jobs`` (and of each job in a bulk request)."""
    call = require_call(call, method)
    _check_options(options, allowed, method)
    o = {key: value for key, value in options.items() if value is not None}
    # The server's bounds that do not depend on its settings (no NaN, NUL, lone surrogate),
    # checked before sending: the same rule, refused as ValueError naming the argument.
    bounds.check_arguments(call.args, call.kwargs, max_depth=None, max_bytes=None)
    if isinstance(o.get("retries"), bool):
        raise TypeError("retries takes an integer, not a boolean")
    body: JobDict = {"job": call.name, "args": list(call.args), "kwargs": dict(call.kwargs)}
    for key in ("queue", "retries", "retry_delays", "timeout_seconds", "idempotency_key"):
        if key in o:
            body[key] = o[key]
    if "expire_after" in o:
        body["expire_after_seconds"] = _seconds(o["expire_after"], "expire_after")
    return body | _timing(o)


def _timing(o: dict[str, Any]) -> JobDict:
    if "delay" in o and "run_at" in o:
        raise ValueError("give delay or run_at, not both")
    if "continue_after" in o and ("delay" in o or "run_at" in o):
        raise ValueError("a continuation cannot also be delayed")
    body: JobDict = {}
    if "delay" in o:
        body["delay_seconds"] = _seconds(o["delay"], "delay")
    if "run_at" in o:
        run_at: datetime = o["run_at"]
        if run_at.utcoffset() is None:
            raise ValueError("run_at must be timezone-aware (e.g. datetime.now(timezone.utc))")
        bounds.check_instant(run_at, "run_at")
        body["run_at"] = run_at.isoformat()
    if "continue_after" in o:
        body["continue_after"] = str(o["continue_after"])
    if o.get("continue_on", "succeeded") != "succeeded":  # "succeeded" is the server's default
        body["continue_on"] = o["continue_on"]
    return body


def schedule_body(
    call: JobCall, delay: Seconds | None, run_at: datetime | None, options: EnqueueOptions
) -> JobDict:
    if (delay is None) == (run_at is None):
        raise ValueError("schedule() needs exactly one of delay or run_at")
    _check_options(options, _ENQUEUE, "schedule")
    return job_body(call, {**options, "delay": delay, "run_at": run_at}, "schedule", _ALL)


def continuation_body(
    parent_id: JobId, call: JobCall, on: ContinueOn, options: EnqueueOptions
) -> JobDict:
    if on not in ("succeeded", "finished"):
        raise ValueError('on must be "succeeded" or "finished"')
    _check_options(options, _ENQUEUE, "continue_with")
    merged = {**options, "continue_after": parent_id, "continue_on": on}
    return job_body(call, merged, "continue_with", _ALL)


def bulk_body(items: Iterable[BulkItem]) -> JobDict:
    jobs = []
    for item in items:
        call, options = item if isinstance(item, tuple) else (item, JobOptions())
        jobs.append(job_body(call, options, "enqueue_many", _ALL))
    return {"jobs": jobs}


def batch_body(items: Iterable[BulkItem], on_complete: BulkItem | None) -> JobDict:
    """``POST /api/v1/batches``: the members, and the job to run once every one has ended."""
    body = {"jobs": bulk_body(items)["jobs"]}
    if on_complete is not None:
        call, options = on_complete if isinstance(on_complete, tuple) else (on_complete, {})
        body["on_complete"] = job_body(call, options, "batch")
    return body


def list_params(
    state: str | None, queue: str | None, job: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    params = {"state": state, "queue": queue, "job": job, "limit": limit, "cursor": cursor}
    return {key: value for key, value in params.items() if value is not None}


def stored_job_id(value: JobId) -> uuid.UUID:
    """The id a client was given, for a client that reads the store itself (the inline and the
    direct clients); ``JobNotFoundError`` when it cannot be a job's id."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise JobNotFoundError(f"no job with id {value}") from None


def job_path(job_id: JobId, action: str = "") -> str:
    return f"/jobs/{quote(str(job_id), safe='')}{action}"


def parse(response: httpx.Response) -> Any:
    """The decoded body of a 2xx answer, or :class:`ApiError` from ``{"error": {...}}``."""
    return parse_answer(response.status_code, response.reason_phrase, response.content)


def parse_answer(status: int, reason: str, body: bytes) -> Any:
    if 200 <= status < 300:
        return json.loads(body)
    code, message = "http_error", body.decode(errors="replace") or reason
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        pass
    raise ApiError(status, code, message)


def outcome(job: JobDict) -> tuple[bool, Any]:
    """``(True, result)`` once the job succeeded; raises if it ended otherwise."""
    if job["state"] == "Succeeded":
        return True, job.get("result")
    if job["state"] in ("Failed", "Deleted"):  # a Failed job has no retry left: it has ended
        raise JobFailedError(job)
    return False, None


def wait_for(
    get: Callable[[], JobDict], job_id: JobId, timeout: float, poll_interval: float
) -> Any:
    """A sync client's ``wait``: ``get()`` the job until it has ended (:func:`outcome`), or
    ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done, result, pause = _looked(get(), job_id, deadline, timeout, poll_interval)
        if done:
            return result
        time.sleep(pause)


async def wait_for_async(
    get: Callable[[], Awaitable[JobDict]], job_id: JobId, timeout: float, poll_interval: float
) -> Any:
    """:func:`wait_for` for an async client: the loop is free between two looks."""
    deadline = time.monotonic() + timeout
    while True:
        done, result, pause = _looked(await get(), job_id, deadline, timeout, poll_interval)
        if done:
            return result
        await asyncio.sleep(pause)


def _looked(
    job: JobDict, job_id: JobId, deadline: float, timeout: float, poll_interval: float
) -> tuple[bool, Any, float]:
    """(ended, result, pause before the next look) for one look at the job; ``TimeoutError``
    once ``deadline`` has passed."""
    done, result = outcome(job)
    if done:
        return True, result, 0.0
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout} s")
    return False, None, min(poll_interval, remaining)


#: httpx's pools give up idle connections before the API's keep-alive ends them (see lean_http).
HTTPX_LIMITS = httpx.Limits(keepalive_expiry=MAX_IDLE_SECONDS)


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
