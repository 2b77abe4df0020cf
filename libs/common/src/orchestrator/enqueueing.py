"""Creating jobs: the one enqueue path, shared by the API and :mod:`orchestrator.testing`.

:func:`prepare` does every check that needs no store: the name in the catalog, the arguments'
bounds and JSON Schema, the queue, and the filters' ``creating`` hooks (which may refuse, or add
parameters kept with the job). :mod:`orchestrator.enqueue_writes` then stores one call's jobs in
one transaction, all or none: an idempotency key (hashed here, :func:`request_hash`) replays its
first job (409 when the body differs), a continuation waits ``Awaiting`` (or is enqueued at once
when its parent has ended already), a batch gets its row. Plain jobs (:func:`is_plain`: no
idempotency key, no parent) need no lookup: one statement stores any number of them (one round
trip on PostgreSQL).

What was committed comes back as a ``Stored``: the caller publishes its outbox entries
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

from orchestrator import bounds
from orchestrator.catalog import Registration, validate_with_schema
from orchestrator.errors import JobValidationError, UnknownJobError
from orchestrator.filters import Creating, Filters
from orchestrator.redaction import redact_for


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
