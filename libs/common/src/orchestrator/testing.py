"""Run jobs inline in a user's unit tests: no broker, no database server, production's code.

Like Celery's eager mode or Dramatiq's stub broker. :class:`InlineClient` has the enqueueing and
reading methods of :class:`orchestrator.Client`; each enqueued job runs at once, in the calling
thread (an async job on a fresh event loop, in a fresh thread when a loop is already running)::

    from orchestrator.testing import InlineClient, run_job
    from myapp.jobs import add, send_report

    def test_report() -> None:
        with InlineClient([add, send_report]) as client:
            job_id = client.enqueue(add.call(1, 2))
            assert client.wait(job_id) == 3
            assert client.get(job_id)["history"][-1]["state"] == "Succeeded"
        assert run_job(add, 2, 2) == 4

It runs the system's own code over a private SQLite store (a temporary file migrated with the
real schema, removed by :meth:`InlineClient.close` or when the client is collected): the API's
enqueue (:mod:`orchestrator.enqueueing`: the JSON Schema check with the message the API answers
422 with, idempotency keys, continuations, batches), the state machine with its built-in hooks
(:mod:`orchestrator.composition`: continuations and batch progress follow each ending), the
worker's strict pydantic model, outcome columns (:mod:`orchestrator.recording`) and retry
election (:func:`orchestrator.retries.elect_retry`), and a person's delete and requeue
(:mod:`orchestrator.interventions`). Reads are the API's view of a job.

What differs: every message the system would publish is run at once, in order, by this client
instead of a broker and a worker, so a retry runs at once (no back-off); scheduled jobs stay
``Scheduled`` until the test calls :meth:`InlineClient.run_scheduled` (so a test controls time);
``timeout_seconds`` is not enforced; any queue is accepted (no ``ORCHESTRATOR_QUEUES``); no
filters run. It needs the full install (``orchestrator-common[server]``).
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Self, Unpack

from pydantic_core import to_jsonable_python
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import client_requests as shape
from orchestrator import (
    composition,
    enqueue_writes,
    enqueueing,
    interventions,
    job_view,
    outbox,
    store,
)
from orchestrator.catalog import Catalog, Registration, validate_with_model, validate_with_schema
from orchestrator.db import db_now
from orchestrator.enqueue_writes import Stored
from orchestrator.enqueueing import Checks, JobRequest
from orchestrator.errors import JobValidationError, UnknownJobError
from orchestrator.inline_store import InlineStore
from orchestrator.inline_worker import InlineWorker, call_job
from orchestrator.jobs import JobCall, JobContext, JobFunction
from orchestrator.lifecycle import Change, RowChange, State
from orchestrator.outbox import Pending
from orchestrator.results import Batch, Job, JobChange, JobPage
from orchestrator.store import continuations
from orchestrator.store import inline as inline_store
from orchestrator.store.tables import Row
from orchestrator.transitions import Transitions

# Spelled here: inside InlineClient, ``list`` is its method.
Ids = list[str]
Views = list[dict[str, Any]]
Messages = list[Pending]
#: A person's delete or requeue (``orchestrator.interventions``).
_Intervention = Callable[
    [AsyncConnection, Transitions, uuid.UUID, datetime, str], Awaitable[Messages]
]
#: Jobs expire as with the default ``ORCHESTRATOR_JOB_RETENTION`` (nothing expires them inline).
_RETENTION = timedelta(days=1)


@dataclass(frozen=True)
class InlineJob:
    """One job as the store holds it (a snapshot); :meth:`public` is the API's view of it."""

    id: str
    job: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    retries: int
    state: str
    attempt: int
    result: Any
    error: dict[str, str] | None
    history: list[dict[str, Any]]
    due_at: datetime | None
    parent_id: str | None
    continue_on: str | None
    batch_id: str | None
    created_at: datetime
    view: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def of(cls, row: Row, history: Sequence[Row]) -> InlineJob:
        view = job_view.public_job(row, history)
        return cls(
            view["id"], row.name, view["args"], view["kwargs"], row.queue, row.retries,
            row.state, row.attempt, view["result"], view["error"], view["history"], row.due_at,
            view["parent_id"], row.continue_on, view["batch_id"], row.created_at, view,
        )  # fmt: skip

    def public(self) -> dict[str, Any]:
        return dict(self.view)


class InlineClient:
    """A stand-in for :class:`orchestrator.Client` that runs every job at once, in-process."""

    def __init__(self, jobs: Catalog | Iterable[JobFunction[Any, Any]]) -> None:
        self.catalog = jobs if isinstance(jobs, Catalog) else Catalog(jobs)
        self._store = InlineStore()
        self._closed = weakref.finalize(self, self._store.close)
        self._transitions = composition.transitions(_RETENTION)
        self._worker = InlineWorker(self._store, self._transitions, self._function)
        registrations = _Registrations(self.catalog.registrations())
        self._checks = Checks(registrations, also=self._check_with_model)

    def close(self) -> None:
        """Remove the private store (also done when the client is collected)."""
        self._closed()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- enqueueing: the same signatures and option checks as Client --------------------------
    def enqueue(self, call: JobCall, /, **options: Unpack[shape.EnqueueOptions]) -> str:
        return self._create([shape.job_body(call, options)])[0]

    def schedule(
        self, call: JobCall, /, *, delay: shape.Seconds | None = None,
        run_at: datetime | None = None, **options: Unpack[shape.EnqueueOptions],
    ) -> str:  # fmt: skip
        return self._create([shape.schedule_body(call, delay, run_at, options)])[0]

    def continue_with(
        self, parent_id: shape.JobId, call: JobCall, /, *, on: shape.ContinueOn = "succeeded",
        **options: Unpack[shape.EnqueueOptions],
    ) -> str:  # fmt: skip
        return self._create([shape.continuation_body(parent_id, call, on, options)])[0]

    def enqueue_many(self, items: Iterable[shape.BulkItem], /) -> Ids:
        """All or nothing, like the API: every job is validated before any is created."""
        return self._create(shape.bulk_body(items)["jobs"], bulk=True)

    def batch(
        self, items: Iterable[shape.BulkItem], /, *, on_complete: shape.BulkItem | None = None
    ) -> Batch:
        """Like the API: ``on_complete`` runs once, when every member has ended the first time."""
        body = shape.batch_body(items, on_complete)
        members = [_Request.of(job) for job in body["jobs"]]
        done = _Request.of(body["on_complete"]) if "on_complete" in body else None
        stored = self._store.run(self._store_batch(members, done))
        self._worker.deliver(stored.pending)
        continuation = stored.continuation_id
        return Batch(
            {
                "id": str(stored.batch_id),
                "job_ids": [str(outcome.id) for outcome in stored.outcomes[: len(members)]],
                "continuation_id": str(continuation) if continuation is not None else None,
            }
        )

    # -- reading and acting ---------------------------------------------------------------------
    @property
    def jobs(self) -> dict[str, InlineJob]:
        """Every job by id, oldest first, as the store holds it now."""
        return {job.id: job for job in self._store.run(self._every_job())}

    def get(self, job_id: shape.JobId) -> Job:
        return Job(self._store.run(self._view(shape.stored_job_id(job_id))))

    def list(
        self, *, state: str | None = None, queue: str | None = None, job: str | None = None
    ) -> JobPage:
        """Every matching job, newest first, on one page (as the API lists them: no result)."""
        if state is not None and state not in {s.value for s in State}:
            return JobPage.of({"items": [], "next_cursor": None})
        where = store.JobFilter(State(state) if state else None, queue, job)
        return JobPage.of({"items": self._store.run(self._list(where)), "next_cursor": None})

    def wait(self, job_id: shape.JobId, *, timeout: float = 0, poll_interval: float = 0) -> Any:
        """The result if it succeeded; raises ``JobFailedError`` if it ended otherwise, and
        ``TimeoutError`` at once if it waits (nothing moves it inline but this client's calls)."""
        view = self.get(job_id)
        done, result = shape.outcome(view)
        if not done:
            raise TimeoutError(
                f"job {view['id']} is {view['state']}: inline, it moves only when this client "
                "runs it (run_scheduled(), its parent ending, requeue())"
            )
        return result

    def delete(self, job_id: shape.JobId) -> JobChange:
        parsed = shape.stored_job_id(job_id)
        self._worker.deliver(
            self._store.run(self._act(interventions.delete_job, parsed, "Deleted"))
        )
        return JobChange({"id": str(parsed), "state": State.DELETED.value})

    def requeue(self, job_id: shape.JobId) -> JobChange:
        parsed = shape.stored_job_id(job_id)
        self._worker.deliver(
            self._store.run(self._act(interventions.requeue_job, parsed, "Requeued"))
        )
        return JobChange({"id": str(parsed), "state": State.ENQUEUED.value})

    def run_scheduled(self, until: datetime | None = None) -> Ids:
        """Run the delayed jobs due by ``until`` (default: all of them); returns their ids."""
        promoted, pending = self._store.run(self._promote(until))
        self._worker.deliver(pending)
        return [str(job_id) for job_id in promoted]

    # -- the store's side, on the store's event loop ---------------------------------------------
    def _create(self, bodies: Sequence[Mapping[str, Any]], *, bulk: bool = False) -> Ids:
        requests = [_Request.of(body) for body in bodies]
        stored = self._store.run(self._store_jobs(requests, bulk))
        self._worker.deliver(stored.pending)
        return [str(outcome.id) for outcome in stored.outcomes]

    async def _store_jobs(self, requests: Sequence[JobRequest], bulk: bool) -> Stored:
        prepared = await enqueueing.prepare(self._checks, requests, bulk=bulk)
        return await enqueue_writes.store_jobs(self._store.engine, prepared, None)

    async def _store_batch(
        self, members: Sequence[JobRequest], on_complete: JobRequest | None
    ) -> enqueue_writes.StoredBatch:
        prepared, continuation = await enqueueing.prepare_batch(self._checks, members, on_complete)
        return await enqueue_writes.store_batch(self._store.engine, prepared, continuation, None)

    def _check_with_model(
        self, registration: Registration, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        """The worker's check too, so that a job its model refuses is not even stored."""
        validate_with_model(self._function(registration.name), args, kwargs)

    def _function(self, name: str) -> JobFunction[Any, Any]:
        function = self.catalog.get(name)
        if function is None:
            raise UnknownJobError(name)
        return function

    async def _view(self, job_id: uuid.UUID) -> dict[str, Any]:
        async with self._store.engine.connect() as conn:
            row = await store.get_job(conn, job_id)
            return job_view.public_job(row, await store.get_history(conn, job_id))

    async def _every_job(self) -> Sequence[InlineJob]:
        async with self._store.engine.connect() as conn:
            rows = await inline_store.every_job(conn)
            return [InlineJob.of(row, await store.get_history(conn, row.id)) for row in rows]

    async def _list(self, where: store.JobFilter) -> Views:
        items: Views = []
        cursor = None
        async with self._store.engine.connect() as conn:
            while True:
                rows, cursor = await store.list_jobs(conn, where, limit=500, cursor=cursor)
                items += [job_view.public_job(row) for row in rows]
                if cursor is None:
                    return items

    async def _act(self, act: _Intervention, job_id: uuid.UUID, verb: str) -> Messages:
        async with self._store.engine.begin() as conn:
            now = await db_now(conn)
            return await act(conn, self._transitions, job_id, now, f"{verb} through the API")

    async def _promote(self, until: datetime | None) -> tuple[Sequence[uuid.UUID], Messages]:
        """As the scheduler promotes delayed jobs once due (here: due by ``until``)."""
        async with self._store.engine.begin() as conn:
            now = await db_now(conn)
            due = await inline_store.delayed_due(conn, until)
            items = [RowChange(job_id, Change("Due")) for job_id in due]
            moved = await self._transitions.move_each(
                conn, items, expected={State.SCHEDULED}, target=State.ENQUEUED, now=now
            )
            rows = await continuations.routing(conn, list(moved))
            publications = [outbox.Publication(r.id, r.queue, r.trace_context or {}) for r in rows]
            pending = await outbox.add(conn, publications, now) + moved.pending
        promoted = set(moved)
        return [job_id for job_id in due if job_id in promoted], pending


@dataclass(frozen=True)
class _Request:
    """One job of a client's JSON body (``orchestrator.client_requests.job_body``), as the API's
    request schema would read it."""

    job: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str | None = None
    delay_seconds: float | None = None
    run_at: datetime | None = None
    continue_after: uuid.UUID | None = None
    continue_on: str | None = None
    retries: int | None = None
    retry_delays: list[float] | None = None
    timeout_seconds: float | None = None
    expire_after_seconds: float | None = None
    idempotency_key: str | None = None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> _Request:
        run_at, parent = body.get("run_at"), body.get("continue_after")
        delays = body.get("retry_delays")
        return cls(
            job=body["job"],
            args=list(body["args"]),
            kwargs=dict(body["kwargs"]),
            queue=body.get("queue"),
            delay_seconds=_seconds(body.get("delay_seconds")),
            run_at=datetime.fromisoformat(run_at) if run_at is not None else None,
            continue_after=_parent_id(parent) if parent is not None else None,
            continue_on=body.get("continue_on"),
            retries=body.get("retries"),
            retry_delays=[float(d) for d in delays] if delays is not None else None,
            timeout_seconds=_seconds(body.get("timeout_seconds")),
            expire_after_seconds=_seconds(body.get("expire_after_seconds")),
            idempotency_key=body.get("idempotency_key"),
        )


class _Registrations:
    """The jobs this client was given; every queue is accepted."""

    def __init__(self, registrations: Iterable[Registration]) -> None:
        self._by_name = {registration.name: registration for registration in registrations}

    async def lookup(self, names: Iterable[str]) -> dict[str, Registration]:
        return {name: self._by_name[name] for name in names if name in self._by_name}

    async def require_queue(self, queue: str, extra: Iterable[str]) -> None:
        return None


def _seconds(value: Any) -> float | None:
    return float(value) if value is not None else None


def _parent_id(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise JobValidationError(
            f"continue_after: no job with id {value}", field="continue_after"
        ) from None


def run_job(function: JobFunction[Any, Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run one job inline, as a worker would, and return its JSON result.

    The arguments are validated exactly as in production; a failing job raises its own
    exception (no retries); a ``JobContext`` parameter is injected, never passed.
    ``run_job(add, 1, 2) == 3``.
    """
    body = shape.job_body(JobCall.named(function.name, *args, **kwargs), {})
    validate_with_schema(Registration.of(function), body["args"], body["kwargs"])
    arguments = validate_with_model(function, body["args"], body["kwargs"])
    context = JobContext(job_id=uuid.uuid4(), attempt=1)
    return to_jsonable_python(call_job(function, arguments, context))


__all__ = ["InlineClient", "InlineJob", "run_job"]
