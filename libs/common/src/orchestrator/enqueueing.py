"""Creating jobs: the one enqueue path, shared by the API and :mod:`orchestrator.testing`.

:func:`prepare` does every check that needs no store: the name in the catalog, the arguments'
bounds and JSON Schema, the queue, and the filters' ``creating`` hooks (which may refuse, or add
parameters kept with the job). Then one call's jobs are stored in one transaction, all or none
(:func:`store_jobs`, :func:`store_batch`): an idempotency key replays its first job (409 when
the body differs), a continuation waits ``Awaiting`` (or is enqueued at once when its parent has
ended already), a batch gets its row. Plain jobs (no idempotency key, no parent) need no lookup:
one statement stores any number of them (:func:`store_plain`; one round trip on PostgreSQL).

What was committed comes back as :class:`Stored`: the caller publishes its outbox entries
(``pending``) and runs its after-commit work on its ``jobs`` (counting, wake-ups, the filters'
``created`` hooks).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from pydantic_core import to_jsonable_python
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import bounds, store
from orchestrator.catalog import Registration, validate_with_schema
from orchestrator.db import db_now
from orchestrator.errors import ConflictError, JobValidationError, UnknownJobError
from orchestrator.filters import Creating, Filters
from orchestrator.jobs import DEFAULT_RETRIES
from orchestrator.lifecycle import BATCH, State, continuation_released
from orchestrator.outbox import Pending
from orchestrator.redaction import redact_for
from orchestrator.store import creation
from orchestrator.store.tables import Row

Trace = dict[str, str] | None


class JobRequest(Protocol):
    """One job a caller asks for, its fields already checked for type and range (the API's
    ``EnqueueRequest``)."""

    @property
    def job(self) -> str: ...
    @property
    def args(self) -> list[Any]: ...
    @property
    def kwargs(self) -> dict[str, Any]: ...
    @property
    def queue(self) -> str | None: ...
    @property
    def delay_seconds(self) -> float | None: ...
    @property
    def run_at(self) -> datetime | None: ...
    @property
    def continue_after(self) -> uuid.UUID | None: ...
    @property
    def continue_on(self) -> str | None: ...
    @property
    def retries(self) -> int | None: ...
    @property
    def retry_delays(self) -> list[float] | None: ...
    @property
    def timeout_seconds(self) -> float | None: ...
    @property
    def expire_after_seconds(self) -> float | None: ...
    @property
    def idempotency_key(self) -> str | None: ...


#: What an idempotency key promises not to change: every field but the key.
HASHED_FIELDS: Final = (
    "job",
    "args",
    "kwargs",
    "queue",
    "delay_seconds",
    "run_at",
    "continue_after",
    "continue_on",
    "retries",
    "retry_delays",
    "timeout_seconds",
    "expire_after_seconds",
)


def request_hash(request: JobRequest, registration: Registration | None) -> str:
    """SHA-256 of the canonical body: what an idempotency key promises not to change.

    Secret arguments are redacted first, so a replay's answer (the first job, or 409) never
    depends on a secret value: it cannot confirm a guessed one. Stored with the job, so its
    text never changes (``tests/api/test_idempotency_hash.py`` pins it)."""
    body = {name: to_jsonable_python(getattr(request, name)) for name in HASHED_FIELDS}
    body["args"], body["kwargs"] = redact_for(registration, body["args"], body["kwargs"])
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Registrations(Protocol):
    """Where :func:`prepare` finds jobs (the API's catalog cache, a test's local catalog)."""

    async def lookup(self, names: Iterable[str]) -> dict[str, Registration]: ...
    async def require_queue(self, queue: str, extra: Iterable[str]) -> None: ...


class ArgumentLimits(Protocol):
    """The edge's bounds on arguments (``Settings`` has them)."""

    @property
    def max_argument_depth(self) -> int | None: ...
    @property
    def max_argument_bytes(self) -> int | None: ...


@dataclass(frozen=True)
class Limits:
    max_argument_depth: int | None = bounds.DEFAULT_ARGUMENT_DEPTH
    max_argument_bytes: int | None = bounds.DEFAULT_ARGUMENT_BYTES


#: A further check of one job's arguments, after the JSON Schema's.
ArgumentCheck = Callable[[Registration, Sequence[Any], Mapping[str, Any]], None]


@dataclass(frozen=True)
class Checks:
    """What :func:`prepare` checks requests against."""

    registrations: Registrations
    filters: Filters = field(default_factory=Filters)
    limits: ArgumentLimits = Limits()
    #: Queues known beyond the catalog's (``ORCHESTRATOR_QUEUES``).
    queues: Sequence[str] = ()
    #: ``orchestrator.testing`` adds the worker's strict model here.
    also: ArgumentCheck | None = None


def check_arguments(limits: ArgumentLimits, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """The edge's bounds on arguments (``orchestrator.bounds``) as ``limits`` set them."""
    try:
        bounds.check_arguments(
            args, kwargs, max_depth=limits.max_argument_depth, max_bytes=limits.max_argument_bytes
        )
    except bounds.BoundsError as exc:
        raise JobValidationError(str(exc), field=exc.field) from None


@dataclass(frozen=True)
class Prepared:
    """A request that passed every check that needs no database."""

    where: str  #: "" for a single job, "jobs[3]: " inside a bulk
    request: JobRequest
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


async def prepare(checks: Checks, requests: Sequence[JobRequest], *, bulk: bool) -> list[Prepared]:
    registrations = await checks.registrations.lookup({r.job for r in requests})
    prepared = []
    for index, request in enumerate(requests):
        where = f"jobs[{index}]: " if bulk else ""
        registration = registrations.get(request.job)
        try:
            if registration is None:
                raise UnknownJobError(request.job)
            check_arguments(checks.limits, request.args, request.kwargs)
            validate_with_schema(registration, request.args, request.kwargs)
            if checks.also is not None:
                checks.also(registration, request.args, request.kwargs)
            queue = request.queue or registration.queue
            if queue != registration.queue:
                await checks.registrations.require_queue(queue, checks.queues)
            creating = Creating(request.job, queue, list(request.args), dict(request.kwargs))
            await checks.filters.creating(creating)  # may refuse (422) or add parameters
        except JobValidationError as exc:
            raise JobValidationError(f"{where}{exc}", field=exc.field) from None
        key = request.idempotency_key
        digest = request_hash(request, registration) if key is not None else None
        prepared.append(Prepared(where, request, registration, queue, digest, creating.parameters))
    return prepared


async def prepare_batch(
    checks: Checks, members: Sequence[JobRequest], on_complete: JobRequest | None
) -> tuple[list[Prepared], Prepared | None]:
    """A batch's members (as a bulk) and its continuation (errors prefixed ``on_complete:``)."""
    _check_batch(members, on_complete)
    prepared = await prepare(checks, members, bulk=True)
    if on_complete is None:
        return prepared, None
    try:
        (continuation,) = await prepare(checks, [on_complete], bulk=False)
    except JobValidationError as exc:
        raise JobValidationError(f"on_complete: {exc}", field=exc.field) from None
    return prepared, continuation


def _check_batch(members: Sequence[JobRequest], on_complete: JobRequest | None) -> None:
    for index, job in enumerate(members):
        if job.idempotency_key is not None:
            raise JobValidationError(
                f"jobs[{index}]: idempotency_key is not supported inside a batch",
                field="idempotency_key",
            )
    done = on_complete
    if done is not None and (
        done.continue_after or done.delay_seconds is not None or done.run_at or done.idempotency_key
    ):
        raise JobValidationError(
            "on_complete: runs when the batch completes; it takes no continue_after, "
            "delay_seconds, run_at or idempotency_key",
            field="on_complete",
        )


def is_plain(prepared: Prepared) -> bool:
    """No idempotency key and no parent: created by one statement, with no lookup first."""
    request = prepared.request
    return request.idempotency_key is None and request.continue_after is None


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
