"""Creating jobs: validation against the catalog, idempotency keys, and one transaction per call.

A single enqueue is a bulk of one; either every job of a call is stored or none is.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import bounds, store
from orchestrator.catalog import Registration, validate_with_schema
from orchestrator.db import db_now, is_postgres
from orchestrator.errors import ConflictError, JobValidationError, UnknownJobError
from orchestrator.filters import Creating
from orchestrator.jobs import DEFAULT_RETRIES
from orchestrator.lifecycle import State
from orchestrator.outbox import Pending
from orchestrator.settings import Settings
from orchestrator.store.tables import Row
from orchestrator.tracing import current_headers
from orchestrator_api.schemas import EnqueueRequest

if TYPE_CHECKING:
    from orchestrator_api.runtime import Runtime


@dataclass(frozen=True)
class Prepared:
    """A request that passed every check that needs no database."""

    where: str  #: "" for a single job, "jobs[3]: " inside a bulk
    request: EnqueueRequest
    registration: Registration
    queue: str
    request_hash: str | None
    #: Added by the filters' ``creating`` hooks; stored in the job's ``options["parameters"]``.
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    id: uuid.UUID
    state: str
    replayed: bool = False


async def prepare(
    runtime: Runtime, requests: Sequence[EnqueueRequest], *, bulk: bool
) -> list[Prepared]:
    registrations = await runtime.catalog.lookup({r.job for r in requests})
    prepared = []
    for index, request in enumerate(requests):
        where = f"jobs[{index}]: " if bulk else ""
        registration = registrations.get(request.job)
        try:
            if registration is None:
                raise UnknownJobError(request.job)
            check_arguments(runtime.settings, request.args, request.kwargs)
            validate_with_schema(registration, request.args, request.kwargs)
            queue = request.queue or registration.queue
            if queue != registration.queue:
                await runtime.catalog.require_queue(queue, runtime.settings.queues)
            creating = Creating(request.job, queue, list(request.args), dict(request.kwargs))
            await runtime.filters.creating(creating)  # may refuse (422) or add parameters
        except JobValidationError as exc:
            raise JobValidationError(f"{where}{exc}", field=exc.field) from None
        key = request.idempotency_key
        prepared.append(
            Prepared(
                where,
                request,
                registration,
                queue,
                request.request_hash(registration) if key is not None else None,
                creating.parameters,
            )
        )
    return prepared


def check_arguments(settings: Settings, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """The edge's bounds on arguments (``orchestrator.bounds``) as this API is configured."""
    try:
        bounds.check_arguments(
            args,
            kwargs,
            max_depth=settings.max_argument_depth,
            max_bytes=settings.max_argument_bytes,
        )
    except bounds.BoundsError as exc:
        raise JobValidationError(str(exc), field=exc.field) from None


def is_plain(prepared: Prepared) -> bool:
    """No idempotency key and no parent: created by one statement, with no lookup first."""
    request = prepared.request
    return request.idempotency_key is None and request.continue_after is None


async def enqueue(runtime: Runtime, prepared: Sequence[Prepared]) -> list[Outcome]:
    """Store the jobs in one transaction, then hand their messages to the fast path."""
    trace = current_headers() or None
    if all(is_plain(p) for p in prepared):
        jobs = [new_job(p, None, {}, trace) for p in prepared]
        runtime.submit(await store.create_plain_jobs(runtime.engine, jobs))
        runtime.created(jobs)
        return [Outcome(job.id, job.state.value) for job in jobs]
    try:
        async with runtime.engine.begin() as conn:
            outcomes, pending, created = await _store(conn, prepared, trace)
    except IntegrityError:
        if not any(p.request_hash for p in prepared):
            raise
        # Another request took one of these idempotency keys between our lookup and insert;
        # a second pass finds its job.
        async with runtime.engine.begin() as conn:
            outcomes, pending, created = await _store(conn, prepared, trace)
    runtime.submit(pending)
    runtime.created(created)
    return outcomes


async def _store(
    conn: AsyncConnection, prepared: Sequence[Prepared], trace: dict[str, str] | None
) -> tuple[list[Outcome], list[Pending], list[store.NewJob]]:
    now = await db_now(conn)
    keys = [p.request.idempotency_key for p in prepared if p.request.idempotency_key]
    existing = await store.find_by_idempotency_keys(conn, keys)
    parents = await parent_states(conn, prepared)
    outcomes: list[Outcome] = []
    new_jobs: list[store.NewJob] = []
    claimed: dict[str, tuple[str | None, Outcome]] = {}
    for item in prepared:
        key = item.request.idempotency_key
        if key is not None:
            replay = _replay(item, key, existing.get(key), claimed.get(key))
            if replay is not None:
                outcomes.append(replay)
                continue
        created_job = new_job(item, now, parents, trace)
        new_jobs.append(created_job)
        outcome = Outcome(created_job.id, created_job.state.value)
        outcomes.append(outcome)
        if key is not None:
            claimed[key] = (item.request_hash, Outcome(created_job.id, outcome.state, True))
    pending = await store.create_jobs(conn, new_jobs, now)
    return outcomes, pending, new_jobs


def _replay(
    item: Prepared,
    key: str,
    row: Row | None,
    earlier: tuple[str | None, Outcome] | None,
) -> Outcome | None:
    """The first job of an idempotency key when this request repeats it; None for a new key."""
    if row is not None:
        if row.request_hash is not None and row.request_hash == item.request_hash:
            return Outcome(row.id, row.state, replayed=True)
        raise ConflictError(
            f"{item.where}idempotency key {key!r} belongs to job {row.id}, which was created "
            "from a different request"
        )
    if earlier is not None:
        earlier_hash, outcome = earlier
        if earlier_hash == item.request_hash:
            return outcome
        raise JobValidationError(
            f"{item.where}idempotency key {key!r} is used twice in this request with different "
            "bodies",
            field="idempotency_key",
        )
    return None


async def parent_states(
    conn: AsyncConnection, prepared: Sequence[Prepared]
) -> dict[uuid.UUID, str]:
    ids = {p.request.continue_after for p in prepared if p.request.continue_after is not None}
    if not ids:
        return {}
    table = store.jobs_table
    query = sa.select(table.c.id, table.c.state).where(table.c.id.in_(ids)).order_by(table.c.id)
    if is_postgres(conn):
        # Hold the parents' state until this transaction commits: a parent ending meanwhile
        # waits for us, then finds the new child among its Awaiting children. In ascending
        # id order, as every lock on several job rows is taken.
        query = query.with_for_update(read=True)
    rows = await conn.execute(query)
    return {row.id: row.state for row in rows}


def new_job(
    item: Prepared,
    now: datetime | None,
    parents: Mapping[uuid.UUID, str],
    trace: dict[str, str] | None,
) -> store.NewJob:
    """The job a request creates; its due time is resolved against ``now``, or left to
    :func:`store.create_plain_jobs` (the database's clock) when ``now`` is None."""
    request = item.request
    options = item.registration.options
    retries = request.retries
    if retries is None:
        retries = int(options.get("retries", DEFAULT_RETRIES))
    timeout = request.timeout_seconds
    if timeout is None and options.get("timeout") is not None:
        timeout = float(options["timeout"])
    job = store.NewJob(
        name=request.job,
        queue=item.queue,
        args=request.args,
        kwargs=request.kwargs,
        retries=retries,
        timeout_seconds=timeout,
        expire_after_seconds=request.expire_after_seconds,
        idempotency_key=request.idempotency_key,
        request_hash=item.request_hash,
        trace_context=trace,
        options=_options(item),
        requested_delay=request.delay_seconds,
        requested_run_at=request.run_at,
    )
    if request.continue_after is not None:
        _continuation(job, item, parents)
    elif now is not None:
        store.resolve_timing(job, now)
    return job


def _options(item: Prepared) -> dict[str, Any]:
    """What the job keeps of its enqueue beyond the columns: its own retry delays, and the
    parameters filters added."""
    options: dict[str, Any] = {}
    if item.request.retry_delays is not None:
        options["retry_delays"] = list(item.request.retry_delays)
    if item.parameters:
        options["parameters"] = item.parameters
    return options


def _continuation(job: store.NewJob, item: Prepared, parents: Mapping[uuid.UUID, str]) -> None:
    """Awaiting, or handled at once when the parent has already ended (see ``endings``)."""
    parent_id = item.request.continue_after
    assert parent_id is not None
    parent_state = parents.get(parent_id)
    if parent_state is None:
        raise JobValidationError(
            f"{item.where}continue_after: no job with id {parent_id}", field="continue_after"
        )
    continue_on = item.request.continue_on or "succeeded"
    job.parent_id = parent_id
    job.continue_on = continue_on
    if parent_state == State.DELETED.value and continue_on == "succeeded":
        raise ConflictError(
            f"{item.where}continue_after: job {parent_id} is Deleted, so a continuation of it "
            "would never run; requeue it first"
        )
    ended = parent_state in (State.SUCCEEDED.value, State.FAILED.value, State.DELETED.value)
    if parent_state == State.SUCCEEDED.value or (ended and continue_on == "finished"):
        job.reason = f"Created; parent {parent_id} already {parent_state}"
    else:
        job.state = State.AWAITING
        job.reason = f"Awaiting job {parent_id}"
