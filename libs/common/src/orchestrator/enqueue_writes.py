"""Storing what :mod:`orchestrator.enqueueing` prepared: one call's jobs in one transaction
(all or none), idempotency keys replayed, continuations and batches; plain jobs in one statement.
The SQL is :mod:`orchestrator.store.jobs` and :mod:`orchestrator.store.creation`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import store
from orchestrator.db import db_now
from orchestrator.enqueueing import Prepared, is_plain
from orchestrator.errors import ConflictError, JobValidationError
from orchestrator.jobs import DEFAULT_RETRIES
from orchestrator.lifecycle import BATCH, State, continuation_released
from orchestrator.outbox import Pending
from orchestrator.store import creation
from orchestrator.store.tables import Row

Trace = dict[str, str] | None


@dataclass(frozen=True)
class Outcome:
    id: uuid.UUID
    state: str
    replayed: bool = False


@dataclass
class Stored:
    """What one write committed: each request's outcome, the outbox entries to publish, and
    the jobs created (not those an idempotency key replayed)."""

    outcomes: list[Outcome]
    pending: list[Pending]
    jobs: list[store.NewJob]


@dataclass
class StoredBatch(Stored):
    batch_id: uuid.UUID = field(default_factory=uuid.uuid4)
    continuation_id: uuid.UUID | None = None


async def store_plain(engine: AsyncEngine, items: Sequence[tuple[Prepared, Trace]]) -> Stored:
    """Plain jobs (:func:`is_plain`), each with its caller's trace context, in one statement;
    commits. Their due times come from the database's clock."""
    jobs = [new_job(prepared, None, {}, trace) for prepared, trace in items]
    pending = await store.create_plain_jobs(engine, jobs)
    return Stored([Outcome(job.id, job.state.value) for job in jobs], pending, jobs)


async def store_jobs(engine: AsyncEngine, prepared: Sequence[Prepared], trace: Trace) -> Stored:
    """The jobs of one call in one transaction; commits."""
    if all(is_plain(p) for p in prepared):
        return await store_plain(engine, [(p, trace) for p in prepared])
    try:
        async with engine.begin() as conn:
            return await _store(conn, prepared, trace)
    except IntegrityError:
        if not any(p.request_hash for p in prepared):
            raise
        # Another request took one of these idempotency keys between our lookup and insert;
        # a second pass finds its job.
        async with engine.begin() as conn:
            return await _store(conn, prepared, trace)


async def store_batch(
    engine: AsyncEngine, members: Sequence[Prepared], on_complete: Prepared | None, trace: Trace
) -> StoredBatch:
    """A batch's members and its continuation (``Awaiting`` the batch) in one transaction."""
    batch_id = uuid.uuid4()
    async with engine.begin() as conn:
        now = await db_now(conn)
        parents = await _parent_states(conn, members)
        jobs = [new_job(item, now, parents, trace) for item in members]
        for job in jobs:
            job.batch_id = batch_id
        continuation = None
        if on_complete is not None:
            continuation = new_job(on_complete, now, {}, trace)
            continuation.state = State.AWAITING
            continuation.continue_on = BATCH
            continuation.reason = f"Awaiting batch {batch_id}"
            jobs.append(continuation)
        continuation_id = continuation.id if continuation is not None else None
        await creation.insert_batch(conn, batch_id, len(members), continuation_id, now)
        pending = await store.create_jobs(conn, jobs, now)
    outcomes = [Outcome(job.id, job.state.value) for job in jobs]
    return StoredBatch(outcomes, pending, jobs, batch_id, continuation_id)


async def _store(conn: AsyncConnection, prepared: Sequence[Prepared], trace: Trace) -> Stored:
    now = await db_now(conn)
    keys = [p.request.idempotency_key for p in prepared if p.request.idempotency_key]
    existing = await store.find_by_idempotency_keys(conn, keys)
    parents = await _parent_states(conn, prepared)
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
    return Stored(outcomes, pending, new_jobs)


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


async def _parent_states(
    conn: AsyncConnection, prepared: Sequence[Prepared]
) -> dict[uuid.UUID, str]:
    ids = {p.request.continue_after for p in prepared if p.request.continue_after is not None}
    return await creation.parent_states(conn, ids)


def new_job(
    item: Prepared,
    now: datetime | None,
    parents: Mapping[uuid.UUID, str],
    trace: Trace,
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
    if continuation_released(State(parent_state), continue_on):
        job.reason = f"Created; parent {parent_id} already {parent_state}"
    else:
        job.state = State.AWAITING
        job.reason = f"Awaiting job {parent_id}"
