"""HTTP clients of the Orchestrator API: ``Client`` (sync) and ``AsyncClient``, same methods.

Job arguments and enqueue options never share a namespace. The arguments are bound first into a
:class:`~orchestrator.jobs.JobCall`; the options are the keywords of the client's method::

    from datetime import timedelta
    from orchestrator import Client, JobCall

    with Client("http://localhost:5001", api_key="secret") as client:
        job_id = client.enqueue(send_email.call("a@b.c", subject="Hi"), queue="critical")
        later = client.schedule(JobCall.named("emails.send", "a@b.c"), delay=timedelta(minutes=5))
        child = client.continue_with(job_id, audit.call(job_id), retries=0)
        print(client.wait(job_id, timeout=30))

A job with a parameter named ``queue`` or ``retries`` is therefore fine: ``f.call(queue="x")``
sets the job's argument, ``client.enqueue(call, queue="x")`` the queue it runs on.
HTTP errors raise :class:`~orchestrator.errors.ApiError`. An API that cannot be reached raises
:class:`~orchestrator.errors.ApiUnavailableError` naming the URL (an ``OrchestratorError`` and
still the ``httpx.ConnectError`` raised before); other network failures raise ``httpx`` errors.

What the methods return (``orchestrator.results``): creating jobs returns their ids (``enqueue``,
``schedule``, ``continue_with``, ``trigger``: a ``str``; ``enqueue_many``: a ``list[str]``); every
other method returns the API's JSON answer as a typed dict (``Job``, ``JobPage``, ``JobChange``,
``Batch``, ``BatchProgress``, ``Recurring``, ``Stats``, ``JobCatalog``): ``answer.state`` and
``answer["state"]`` both work.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict, Unpack
from urllib.parse import quote

import httpx

from orchestrator import bounds
from orchestrator.client_errors import unavailable
from orchestrator.client_recurring import AsyncRecurringMethods, RecurringMethods
from orchestrator.errors import ApiError, JobFailedError
from orchestrator.jobs import JobCall, JobFunction
from orchestrator.lean_http import MAX_IDLE_SECONDS, LeanHTTP
from orchestrator.propagation import current_headers
from orchestrator.results import (
    Batch,
    BatchProgress,
    Job,
    JobCatalog,
    JobChange,
    JobPage,
    Stats,
)

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


#: httpx's pools give up idle connections before the API's keep-alive ends them (see lean_http).
_LIMITS = httpx.Limits(keepalive_expiry=MAX_IDLE_SECONDS)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client(RecurringMethods):
    """Blocking client; use as a context manager or call :meth:`close`. Safe to share between
    threads. It keeps HTTP/1.1 connections alive (``orchestrator.lean_http``); with a
    ``transport`` it goes through ``httpx.Client`` and that transport instead."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._http: httpx.Client | None = None
        self._lean: LeanHTTP | None = None
        if transport is None:
            self._lean = LeanHTTP(base_url, _headers(api_key), timeout)
        else:
            self._http = httpx.Client(
                base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport,
                limits=_LIMITS,
            )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._lean is not None:
            self._lean.close()
        if self._http is not None:
            self._http.close()

    def _call(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        # The caller's active span (if it traces) becomes the parent of what the API does.
        headers = current_headers()
        try:
            if self._lean is not None:
                status, reason, body = self._lean.request(
                    method, API + path, json_body=json, params=params, headers=headers
                )
                return parse_answer(status, reason, body)
            assert self._http is not None
            answer = self._http.request(
                method, API + path, headers=headers, json=json, params=params
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise unavailable(self.base_url, exc) from exc
        return parse(answer)

    def enqueue(self, call: JobCall, /, **options: Unpack[EnqueueOptions]) -> str:
        """Run ``call`` as soon as a worker is free; returns the job id."""
        return str(self._call("POST", "/jobs", json=job_body(call, options))["id"])

    def schedule(
        self, call: JobCall, /, *, delay: Seconds | None = None, run_at: datetime | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> str:
        """Run ``call`` after ``delay`` or at ``run_at`` (timezone-aware); exactly one of them."""
        body = schedule_body(call, delay, run_at, options)
        return str(self._call("POST", "/jobs", json=body)["id"])

    def continue_with(
        self, parent_id: JobId, call: JobCall, /, *, on: ContinueOn = "succeeded",
        **options: Unpack[EnqueueOptions],
    ) -> str:
        """Run ``call`` once the parent succeeded (``on="finished"``: once it ended at all)."""
        body = continuation_body(parent_id, call, on, options)
        return str(self._call("POST", "/jobs", json=body)["id"])

    def enqueue_many(self, items: Iterable[BulkItem], /) -> IdList:
        """Create every job or none; each item is a call or ``(call, {"queue": "low", ...})``."""
        return [str(i) for i in self._call("POST", "/jobs/bulk", json=bulk_body(items))["ids"]]

    def batch(
        self, items: Iterable[BulkItem], /, *, on_complete: BulkItem | None = None
    ) -> Batch:
        """Create the jobs (all or none) and ``on_complete``, run once after every one has ended:
        ``{"id", "job_ids", "continuation_id"}``."""
        return Batch.of(self._call("POST", "/batches", json=batch_body(items, on_complete)))

    def get_batch(self, batch_id: JobId) -> BatchProgress:
        """``{"id", "total", "succeeded", "failed", "deleted", "pending", "state"}``."""
        return BatchProgress.of(self._call("GET", f"/batches/{quote(str(batch_id), safe='')}"))

    def get(self, job_id: JobId) -> Job:
        return Job.of(self._call("GET", job_path(job_id)))

    def list(
        self, *, state: str | None = None, queue: str | None = None, job: str | None = None,
        limit: int = 50, cursor: str | None = None,
    ) -> JobPage:
        """One page, newest first: ``{"items": [...], "next_cursor": str | None}``."""
        params = list_params(state, queue, job, limit, cursor)
        return JobPage.of(self._call("GET", "/jobs", params=params))

    def iter_jobs(
        self, *, state: str | None = None, queue: str | None = None, job: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        """Every matching job, newest first, fetching pages as it goes."""
        cursor: str | None = None
        while True:
            page = self.list(state=state, queue=queue, job=job, limit=page_size, cursor=cursor)
            yield from page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def delete(self, job_id: JobId) -> JobChange:
        return JobChange.of(self._call("DELETE", job_path(job_id)))

    def requeue(self, job_id: JobId) -> JobChange:
        return JobChange.of(self._call("POST", job_path(job_id, "/requeue")))

    def stats(self) -> Stats:
        return Stats.of(self._call("GET", "/stats"))

    def catalog(self) -> JobCatalog:
        return JobCatalog.of(self._call("GET", "/catalog"))

    def wait(self, job_id: JobId, *, timeout: float = 60.0, poll_interval: float = 0.25) -> Any:
        """The job's result once it succeeded; :class:`JobFailedError` if it ended ``Failed``
        or ``Deleted``; ``TimeoutError`` if neither happened within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            done, result = outcome(job)
            if done:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout} s")
            time.sleep(min(poll_interval, remaining))


class AsyncClient(AsyncRecurringMethods):
    """The same methods as :class:`Client`, awaitable (``httpx.AsyncClient``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport,
            limits=_LIMITS,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = current_headers()  # joins the caller's trace, as above
        try:
            answer = await self._http.request(method, API + path, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise unavailable(self.base_url, exc) from exc
        return parse(answer)

    async def enqueue(self, call: JobCall, /, **options: Unpack[EnqueueOptions]) -> str:
        return str((await self._call("POST", "/jobs", json=job_body(call, options)))["id"])

    async def schedule(
        self, call: JobCall, /, *, delay: Seconds | None = None, run_at: datetime | None = None,
        **options: Unpack[EnqueueOptions],
    ) -> str:
        body = schedule_body(call, delay, run_at, options)
        return str((await self._call("POST", "/jobs", json=body))["id"])

    async def continue_with(
        self, parent_id: JobId, call: JobCall, /, *, on: ContinueOn = "succeeded",
        **options: Unpack[EnqueueOptions],
    ) -> str:
        body = continuation_body(parent_id, call, on, options)
        return str((await self._call("POST", "/jobs", json=body))["id"])

    async def enqueue_many(self, items: Iterable[BulkItem], /) -> IdList:
        answer = await self._call("POST", "/jobs/bulk", json=bulk_body(items))
        return [str(i) for i in answer["ids"]]

    async def batch(
        self, items: Iterable[BulkItem], /, *, on_complete: BulkItem | None = None
    ) -> Batch:
        return Batch.of(await self._call("POST", "/batches", json=batch_body(items, on_complete)))

    async def get_batch(self, batch_id: JobId) -> BatchProgress:
        path = f"/batches/{quote(str(batch_id), safe='')}"
        return BatchProgress.of(await self._call("GET", path))

    async def get(self, job_id: JobId) -> Job:
        return Job.of(await self._call("GET", job_path(job_id)))

    async def list(
        self, *, state: str | None = None, queue: str | None = None, job: str | None = None,
        limit: int = 50, cursor: str | None = None,
    ) -> JobPage:
        params = list_params(state, queue, job, limit, cursor)
        return JobPage.of(await self._call("GET", "/jobs", params=params))

    async def iter_jobs(
        self, *, state: str | None = None, queue: str | None = None, job: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Job]:
        cursor: str | None = None
        while True:
            page = await self.list(
                state=state, queue=queue, job=job, limit=page_size, cursor=cursor
            )
            for item in page["items"]:
                yield item
            cursor = page["next_cursor"]
            if cursor is None:
                return

    async def delete(self, job_id: JobId) -> JobChange:
        return JobChange.of(await self._call("DELETE", job_path(job_id)))

    async def requeue(self, job_id: JobId) -> JobChange:
        return JobChange.of(await self._call("POST", job_path(job_id, "/requeue")))

    async def stats(self) -> Stats:
        return Stats.of(await self._call("GET", "/stats"))

    async def catalog(self) -> JobCatalog:
        return JobCatalog.of(await self._call("GET", "/catalog"))

    async def wait(
        self, job_id: JobId, *, timeout: float = 60.0, poll_interval: float = 0.25
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.get(job_id)
            done, result = outcome(job)
            if done:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout} s")
            await asyncio.sleep(min(poll_interval, remaining))


__all__ = ["AsyncClient", "Client", "EnqueueOptions", "JobOptions", "job_body"]
