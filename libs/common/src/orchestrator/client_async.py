"""``AsyncClient``: the same methods as :class:`~orchestrator.Client`, awaitable, on
``httpx.AsyncClient``. ``from orchestrator import AsyncClient`` (or ``orchestrator.client``) is
the usual import; what it sends is :mod:`orchestrator.client_requests`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any, Unpack
from urllib.parse import quote

import httpx

from orchestrator.client_errors import unavailable
from orchestrator.client_recurring import AsyncRecurringMethods
from orchestrator.client_requests import (
    API,
    DEFAULT_TIMEOUT,
    HTTPX_LIMITS,
    BulkItem,
    ContinueOn,
    EnqueueOptions,
    IdList,
    JobId,
    Seconds,
    auth_headers,
    batch_body,
    bulk_body,
    continuation_body,
    job_body,
    job_path,
    list_params,
    parse,
    schedule_body,
    wait_for_async,
)
from orchestrator.jobs import JobCall
from orchestrator.propagation import current_headers
from orchestrator.results import Batch, BatchProgress, Job, JobCatalog, JobChange, JobPage, Stats


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
            base_url=base_url, headers=auth_headers(api_key), timeout=timeout, transport=transport,
            limits=HTTPX_LIMITS,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = current_headers()  # joins the caller's trace, as Client's requests do
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
        return await wait_for_async(lambda: self.get(job_id), job_id, timeout, poll_interval)
