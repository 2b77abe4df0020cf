"""HTTP clients of the Orchestrator API: ``Client`` (sync) and ``AsyncClient``, same methods
(``AsyncClient`` is :mod:`orchestrator.client_async`; what both send is
:mod:`orchestrator.client_requests`, re-exported here).

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

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Unpack
from urllib.parse import quote

import httpx

from orchestrator.client_async import AsyncClient as AsyncClient
from orchestrator.client_errors import unavailable
from orchestrator.client_recurring import RecurringMethods

# What both clients send, built in one place; re-exported under the names it always had here.
from orchestrator.client_requests import API as API
from orchestrator.client_requests import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
from orchestrator.client_requests import HTTPX_LIMITS as HTTPX_LIMITS
from orchestrator.client_requests import BulkItem as BulkItem
from orchestrator.client_requests import ContinueOn as ContinueOn
from orchestrator.client_requests import EnqueueOptions as EnqueueOptions
from orchestrator.client_requests import IdList as IdList
from orchestrator.client_requests import JobDict as JobDict
from orchestrator.client_requests import JobId as JobId
from orchestrator.client_requests import JobOptions as JobOptions
from orchestrator.client_requests import Seconds as Seconds
from orchestrator.client_requests import auth_headers as auth_headers
from orchestrator.client_requests import batch_body as batch_body
from orchestrator.client_requests import bulk_body as bulk_body
from orchestrator.client_requests import continuation_body as continuation_body
from orchestrator.client_requests import job_body as job_body
from orchestrator.client_requests import job_path as job_path
from orchestrator.client_requests import list_params as list_params
from orchestrator.client_requests import outcome as outcome
from orchestrator.client_requests import parse as parse
from orchestrator.client_requests import parse_answer as parse_answer
from orchestrator.client_requests import require_call as require_call
from orchestrator.client_requests import schedule_body as schedule_body
from orchestrator.client_requests import wait_for
from orchestrator.jobs import JobCall
from orchestrator.lean_http import LeanHTTP
from orchestrator.propagation import current_headers
from orchestrator.results import Batch, BatchProgress, Job, JobCatalog, JobChange, JobPage, Stats


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
            self._lean = LeanHTTP(base_url, auth_headers(api_key), timeout)
        else:
            self._http = httpx.Client(
                base_url=base_url,
                headers=auth_headers(api_key),
                timeout=timeout,
                transport=transport,
                limits=HTTPX_LIMITS,
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
        return wait_for(lambda: self.get(job_id), job_id, timeout, poll_interval)


__all__ = ["AsyncClient", "Client", "EnqueueOptions", "JobOptions", "job_body"]
