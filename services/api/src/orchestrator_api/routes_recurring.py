"""``/api/v1/recurring``: recurring jobs by id (add or update, read, delete, trigger, pause)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from orchestrator import recurring, store
from orchestrator.bounds import PositiveSeconds, Text
from orchestrator.catalog import Registration, validate_with_schema
from orchestrator.db import db_now
from orchestrator.enqueue_requests import JobName, QueueName, Retries
from orchestrator.enqueueing import check_arguments
from orchestrator.errors import UnknownJobError
from orchestrator.metrics import JOBS_ENQUEUED
from orchestrator.redaction import redact_view
from orchestrator.schedule import ScheduleError, parse
from orchestrator_api.errors import BODY_ERRORS, ApiError, documented
from orchestrator_api.runtime import Runtime, runtime_of
from orchestrator_api.strict_json import StrictJsonRoute

router = APIRouter(prefix="/api/v1/recurring", tags=["recurring"], route_class=StrictJsonRoute)

RecurringId = Annotated[Text, Path(min_length=1, max_length=200)]
_ERRORS = documented(
    404,
    422,
    e404="No recurring job with that id",
    e422="Invalid cron, unknown time zone, unknown job, queue or bad arguments",
)


class RecurringRequest(BaseModel):
    """A recurring job: a catalog job, its arguments, and a cron expression in a time zone."""

    model_config = ConfigDict(extra="forbid")

    job: JobName
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    cron: Text = Field(
        min_length=1,
        max_length=120,
        description="5 fields, 6 with seconds first, or @hourly/@daily/@weekly/@monthly/@yearly",
    )
    timezone: Text = Field(default="UTC", min_length=1, max_length=64, description="IANA name")
    queue: QueueName | None = Field(default=None, description="default: the job's own queue")
    misfire: recurring.Misfire = "relaxed"
    overlap: recurring.Overlap = "allow"
    retries: Retries | None = None
    timeout_seconds: PositiveSeconds | None = None

    def definition(self, recurring_id: str) -> recurring.Definition:
        options = {"retries": self.retries, "timeout_seconds": self.timeout_seconds}
        return recurring.Definition(
            id=recurring_id,
            job=self.job,
            cron=self.cron,
            timezone=self.timezone,
            args=self.args,
            kwargs=self.kwargs,
            queue=self.queue,
            misfire=self.misfire,
            overlap=self.overlap,
            options={key: value for key, value in options.items() if value is not None},
        )


async def _registration(runtime: Runtime, name: str) -> Registration:
    registration = (await runtime.catalog.lookup([name])).get(name)
    if registration is None:
        raise UnknownJobError(name)
    return registration


def _check_schedule(body: RecurringRequest) -> None:
    try:
        parse(body.cron, body.timezone)
    except ScheduleError as exc:
        raise ApiError(422, f"invalid_{exc.field}", str(exc)) from None


@router.put(
    "/{recurring_id}", responses={**BODY_ERRORS, **_ERRORS, 201: {"description": "Created"}}
)
async def add_or_update(
    recurring_id: RecurringId, body: RecurringRequest, request: Request, response: Response
) -> dict[str, Any]:
    """Create the recurring job or replace its definition (201 created, 200 updated)."""
    runtime = runtime_of(request)
    _check_schedule(body)
    registration = await _registration(runtime, body.job)
    check_arguments(runtime.settings, body.args, body.kwargs)
    validate_with_schema(registration, body.args, body.kwargs)
    if body.queue is not None and body.queue != registration.queue:
        await runtime.catalog.require_queue(body.queue, runtime.settings.queues)
    definition = body.definition(recurring_id)
    try:
        created = await _save(runtime, definition)
    except IntegrityError:  # created concurrently by another request: now it is an update
        created = await _save(runtime, definition)
    response.status_code = 201 if created else 200
    async with runtime.engine.connect() as conn:
        saved = await recurring.read(conn, recurring_id)
    return redact_view(saved, await runtime.catalog.all())


async def _save(runtime: Runtime, definition: recurring.Definition) -> bool:
    async with runtime.engine.begin() as conn:
        return await recurring.save(conn, definition, await db_now(conn))


@router.get("")
async def list_recurring(request: Request) -> dict[str, Any]:
    """Every recurring job, by id."""
    runtime = runtime_of(request)
    async with runtime.engine.connect() as conn:
        items = await recurring.read_all(conn)
    registrations = await runtime.catalog.all()
    return {"items": [redact_view(item, registrations) for item in items]}


@router.get("/{recurring_id}", responses=_ERRORS)
async def get_recurring(recurring_id: RecurringId, request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    async with runtime.engine.connect() as conn:
        definition = await recurring.read(conn, recurring_id)
    return redact_view(definition, await runtime.catalog.all())


@router.delete("/{recurring_id}", responses=_ERRORS)
async def delete_recurring(recurring_id: RecurringId, request: Request) -> dict[str, Any]:
    """Remove the definition; runs already created are ordinary jobs and stay."""
    async with runtime_of(request).engine.begin() as conn:
        await recurring.remove(conn, recurring_id)
    return {"id": recurring_id, "deleted": True}


@router.post("/{recurring_id}/trigger", responses=_ERRORS)
async def trigger(recurring_id: RecurringId, request: Request) -> dict[str, Any]:
    """Run it now, once, whatever its schedule, pause or overlap; the next run does not move."""
    runtime = runtime_of(request)
    async with runtime.engine.connect() as conn:
        name = (await recurring.get(conn, recurring_id)).name
    registration = await _registration(runtime, name)
    async with runtime.engine.begin() as conn:
        row = await recurring.get(conn, recurring_id, lock=True)
        validate_with_schema(registration, row.args, row.kwargs)
        now = await db_now(conn)
        run = recurring.new_run(row, registration, now, f"Triggered recurring job {row.id!r}")
        pending = await store.create_jobs(conn, [run], now)
        await recurring.record_runs(conn, recurring_id, [run], now)
    runtime.submit(pending)
    JOBS_ENQUEUED.labels(run.queue, run.name, run.state.value).inc()
    return {"job_id": str(run.id)}


async def _pause(request: Request, recurring_id: str, paused: bool) -> dict[str, Any]:
    async with runtime_of(request).engine.begin() as conn:
        await recurring.set_paused(conn, recurring_id, paused, await db_now(conn))
        return await recurring.read(conn, recurring_id)


@router.post("/{recurring_id}/pause", responses=_ERRORS)
async def pause(recurring_id: RecurringId, request: Request) -> dict[str, Any]:
    """No runs until resumed."""
    return await _pause(request, recurring_id, True)


@router.post("/{recurring_id}/resume", responses=_ERRORS)
async def resume(recurring_id: RecurringId, request: Request) -> dict[str, Any]:
    """Runs again from the next occurrence; nothing missed while paused is made up."""
    return await _pause(request, recurring_id, False)
