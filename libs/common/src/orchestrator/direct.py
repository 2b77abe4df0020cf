"""A producer that writes its jobs to the store itself: the API's enqueue without the HTTP hop.

:class:`DirectClient` (and :class:`AsyncDirectClient`, awaited, on the caller's loop) has the
enqueueing methods of :class:`orchestrator.Client` (``enqueue``,
``schedule``, ``continue_with``, ``enqueue_many``, ``batch``) and ``get``/``wait``. Each call runs
what ``POST /api/v1/jobs`` runs, in the calling process: the request body's model
(:mod:`orchestrator.enqueue_requests`), the checks against the stored catalog (the workers'
registrations: name, queue, JSON Schema of the arguments, bounds, the filters' ``creating``), the
API's :class:`~orchestrator.enqueuer.Enqueuer` (group commit: the job, its history row and its
outbox row in one statement), and after commit the publish to RabbitMQ (persistent, mandatory,
confirmed) and the schedulers' wake-up for an earlier delayed job. A call returns once its job is
committed, as the API answers; the publish follows on the client's own thread, and what it did not
publish (the process ended, RabbitMQ was away) the scheduler's relay publishes from the outbox::

    from orchestrator.direct import DirectClient

    with DirectClient() as client:          # ORCHESTRATOR_DATABASE_URL, ORCHESTRATOR_AMQP_URL, …
        job_id = client.enqueue(add.call(1, 2))

It is for a team's own services that may hold the store's and the broker's credentials, as
Hangfire's client writes to its storage: no API key is asked and no request throttle applies
(docs/security.md). Errors are the library's own, worded as the API's answers:
``JobValidationError`` where the API answers 422, ``ConflictError`` for 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self, TypeVar, Unpack

import pydantic
from opentelemetry import context as otel_context
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import client_requests as shape
from orchestrator import job_view, store
from orchestrator.broker_link import BrokerLink
from orchestrator.catalog_cache import CatalogCache
from orchestrator.db import create_engine
from orchestrator.enqueue_requests import (
    BulkRequest,
    EnqueueRequest,
    describe_validation,
    error_location,
)
from orchestrator.enqueue_writes import Outcome
from orchestrator.enqueuer import Enqueuer
from orchestrator.errors import JobValidationError
from orchestrator.filters import Filters
from orchestrator.filters import load as load_filters
from orchestrator.jobs import JobCall
from orchestrator.outbox import OutboxSender
from orchestrator.results import Batch, Job
from orchestrator.scheduler_wake import SchedulerWake
from orchestrator.settings import Settings

_T = TypeVar("_T")
log = logging.getLogger(__name__)
#: How long closing waits for the publishes of committed jobs (the relay sends the rest).
_CLOSE_SECONDS = 10.0


@dataclass
class _Parts:
    """The API's enqueue path and its publisher, on the loop that runs them; what both clients
    call once a request body is built."""

    engine: AsyncEngine
    sender: OutboxSender
    link: BrokerLink
    enqueuer: Enqueuer

    @classmethod
    async def start(cls, settings: Settings, connect_seconds: float) -> _Parts:
        engine = create_engine(settings.database_url)
        catalog = CatalogCache(engine, settings.jobs)
        sender = OutboxSender(engine, None)
        link = BrokerLink(settings, sender, name="orchestrator-direct-client")
        filters = Filters(load_filters(settings.filters))
        wake = SchedulerWake(sender, link.topology)
        enqueuer = Enqueuer(engine, settings, catalog, filters, sender.submit, wake)
        sender.start()
        link.start()
        enqueuer.start()
        # Jobs enqueued before the broker answers wait in the outbox for the relay; waiting a
        # moment here spares the first ones that delay.
        await link.connected_within(connect_seconds)
        with contextlib.suppress(Exception):
            await catalog.refresh()
        return cls(engine, sender, link, enqueuer)

    async def stop(self) -> None:
        await self.enqueuer.stop()
        try:
            await asyncio.wait_for(self.sender.stop(), _CLOSE_SECONDS)
        except Exception:
            log.warning("outbox sender did not finish; the relay will publish the rest")
        await self.link.stop()
        await self.engine.dispose()

    async def one(self, body: Mapping[str, Any]) -> str:
        """One job of ``POST /api/v1/jobs``'s body; its id."""
        (outcome,) = await self._create([_validated(EnqueueRequest, _as_sent(body))], bulk=False)
        return str(outcome.id)

    async def many(self, body: Mapping[str, Any]) -> list[str]:
        """The jobs of ``POST /api/v1/jobs/bulk``'s body, all or none; their ids in order."""
        requests = _validated(BulkRequest, _as_sent(body)).jobs
        return [str(outcome.id) for outcome in await self._create(requests, bulk=True)]

    async def batch(self, body: Mapping[str, Any]) -> Batch:
        """A batch of ``POST /api/v1/batches``'s body."""
        sent = _as_sent(body)
        members = _validated(BulkRequest, {"jobs": sent["jobs"]}).jobs
        done = sent.get("on_complete")
        continuation = _validated(EnqueueRequest, done) if done is not None else None
        stored = await self.enqueuer.batch(members, continuation)
        continuation_id = stored.continuation_id
        return Batch(
            {
                "id": str(stored.batch_id),
                "job_ids": [str(outcome.id) for outcome in stored.outcomes[: len(members)]],
                "continuation_id": str(continuation_id) if continuation_id is not None else None,
            }
        )

    async def get(self, job_id: shape.JobId) -> Job:
        """The job as ``GET /api/v1/jobs/{id}`` shows it; ``JobNotFoundError`` if there is none."""
        parsed = shape.stored_job_id(job_id)
        async with self.engine.connect() as conn:
            row = await store.get_job(conn, parsed)
            return Job(job_view.public_job(row, await store.get_history(conn, parsed)))

    async def _create(self, requests: Sequence[EnqueueRequest], *, bulk: bool) -> list[Outcome]:
        prepared = await self.enqueuer.prepare(requests, bulk=bulk)
        if len(prepared) == 1:
            return [await self.enqueuer.one(prepared[0])]
        return await self.enqueuer.many(prepared)


class DirectClient:
    """Enqueues by writing to the store and publishing itself (see the module's docstring);
    its calls block, on a loop in a thread of its own."""

    def __init__(self, settings: Settings | None = None, *, connect_seconds: float = 5.0) -> None:
        self.settings = settings if settings is not None else Settings()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="orchestrator-direct-client", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self._parts = self._run(_Parts.start(self.settings, connect_seconds))
        except BaseException:
            self._end_loop()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Publish what was committed (up to 10 s; the relay sends the rest) and disconnect."""
        if self._closed:
            return
        try:
            self._run(self._parts.stop())
        finally:
            self._end_loop()

    # -- enqueueing: the same signatures and option checks as Client --------------------------
    def enqueue(self, call: JobCall, /, **options: Unpack[shape.EnqueueOptions]) -> str:
        """Run ``call`` as soon as a worker is free; returns the job id."""
        return self._run(self._parts.one(shape.job_body(call, options)))

    def schedule(
        self, call: JobCall, /, *, delay: shape.Seconds | None = None,
        run_at: datetime | None = None, **options: Unpack[shape.EnqueueOptions],
    ) -> str:  # fmt: skip
        """Run ``call`` after ``delay`` seconds or at ``run_at``; returns the job id."""
        return self._run(self._parts.one(shape.schedule_body(call, delay, run_at, options)))

    def continue_with(
        self, parent_id: shape.JobId, call: JobCall, /, *,
        on: shape.ContinueOn = "succeeded", **options: Unpack[shape.EnqueueOptions],
    ) -> str:  # fmt: skip
        """Run ``call`` once ``parent_id`` has succeeded (``on="finished"``: ended any way)."""
        return self._run(self._parts.one(shape.continuation_body(parent_id, call, on, options)))

    def enqueue_many(self, items: Iterable[shape.BulkItem], /) -> list[str]:
        """All or nothing: every job is checked before any is created; the ids in order."""
        return self._run(self._parts.many(shape.bulk_body(items)))

    def batch(
        self, items: Iterable[shape.BulkItem], /, *, on_complete: shape.BulkItem | None = None
    ) -> Batch:
        """Jobs that run as usual, and ``on_complete`` once every one has ended the first time."""
        return self._run(self._parts.batch(shape.batch_body(items, on_complete)))

    # -- reading --------------------------------------------------------------------------------
    def get(self, job_id: shape.JobId) -> Job:
        """The job as ``GET /api/v1/jobs/{id}`` shows it; ``JobNotFoundError`` if there is none."""
        return self._run(self._parts.get(job_id))

    def wait(
        self, job_id: shape.JobId, *, timeout: float = 60.0, poll_interval: float = 0.05
    ) -> Any:
        """The job's result once it succeeded; ``JobFailedError`` if it ended ``Failed`` or
        ``Deleted``; ``TimeoutError`` if neither happened within ``timeout`` seconds."""
        return shape.wait_for(lambda: self.get(job_id), job_id, timeout, poll_interval)

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the client's loop, in the caller's trace context (the caller's
        span becomes the parent of the job's, as through the API)."""
        if self._closed:
            coroutine.close()
            raise RuntimeError("this DirectClient is closed")
        caller = otel_context.get_current()
        return asyncio.run_coroutine_threadsafe(_within(caller, coroutine), self._loop).result()

    def _end_loop(self) -> None:
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class AsyncDirectClient:
    """:class:`DirectClient` for a program with an event loop (as :class:`AsyncClient` is for
    :class:`Client`): the same methods, awaited, on the caller's loop::

        async with AsyncDirectClient() as client:
            job_id = await client.enqueue(add.call(1, 2))
    """

    def __init__(self, settings: Settings | None = None, *, connect_seconds: float = 5.0) -> None:
        self.settings = settings if settings is not None else Settings()
        self._connect_seconds = connect_seconds
        self._started: _Parts | None = None

    async def start(self) -> Self:
        """Connect to the store and RabbitMQ (``async with`` does it)."""
        if self._started is None:
            self._started = await _Parts.start(self.settings, self._connect_seconds)
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Publish what was committed (up to 10 s; the relay sends the rest) and disconnect."""
        started, self._started = self._started, None
        if started is not None:
            await started.stop()

    @property
    def _parts(self) -> _Parts:
        if self._started is None:
            raise RuntimeError("this AsyncDirectClient is not started (use async with)")
        return self._started

    async def enqueue(self, call: JobCall, /, **options: Unpack[shape.EnqueueOptions]) -> str:
        return await self._parts.one(shape.job_body(call, options))

    async def schedule(
        self, call: JobCall, /, *, delay: shape.Seconds | None = None,
        run_at: datetime | None = None, **options: Unpack[shape.EnqueueOptions],
    ) -> str:  # fmt: skip
        return await self._parts.one(shape.schedule_body(call, delay, run_at, options))

    async def continue_with(
        self, parent_id: shape.JobId, call: JobCall, /, *,
        on: shape.ContinueOn = "succeeded", **options: Unpack[shape.EnqueueOptions],
    ) -> str:  # fmt: skip
        return await self._parts.one(shape.continuation_body(parent_id, call, on, options))

    async def enqueue_many(self, items: Iterable[shape.BulkItem], /) -> list[str]:
        return await self._parts.many(shape.bulk_body(items))

    async def batch(
        self, items: Iterable[shape.BulkItem], /, *, on_complete: shape.BulkItem | None = None
    ) -> Batch:
        return await self._parts.batch(shape.batch_body(items, on_complete))

    async def get(self, job_id: shape.JobId) -> Job:
        return await self._parts.get(job_id)

    async def wait(
        self, job_id: shape.JobId, *, timeout: float = 60.0, poll_interval: float = 0.05
    ) -> Any:
        """As :meth:`DirectClient.wait`, without blocking the loop."""
        return await shape.wait_for_async(
            lambda: self.get(job_id), job_id, timeout, poll_interval
        )


async def _within(context: otel_context.Context, coroutine: Coroutine[Any, Any, _T]) -> _T:
    token = otel_context.attach(context)
    try:
        return await coroutine
    finally:
        otel_context.detach(token)


def _as_sent(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body as the API would receive it: through JSON (tuples become lists, NaN is refused
    by the client's own checks before this)."""
    loaded: dict[str, Any] = json.loads(json.dumps(body, ensure_ascii=False, allow_nan=False))
    return loaded


_Model = TypeVar("_Model", bound=pydantic.BaseModel)


def _validated(model: type[_Model], body: Mapping[str, Any]) -> _Model:
    """``body`` read by the API's request model; a refusal names the field as the API's 422."""
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        where = error_location(errors[0]) if errors else ""
        raise JobValidationError(describe_validation(errors), field=where or None) from None


__all__ = ["AsyncDirectClient", "DirectClient"]
