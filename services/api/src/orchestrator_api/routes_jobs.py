"""``/api/v1/jobs``: enqueue, bulk, read, list, delete, requeue."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from orchestrator import interventions, store
from orchestrator.bounds import Text
from orchestrator.db import db_now
from orchestrator.enqueue_requests import BulkRequest, EnqueueRequest
from orchestrator.errors import JobNotFoundError
from orchestrator.job_view import public_job
from orchestrator.lifecycle import State
from orchestrator.metrics import JOBS_DELETED, JOBS_REQUEUED
from orchestrator.outbox import Pending
from orchestrator.redaction import redact_view
from orchestrator.tracing import JOB_ID, JOB_NAME, QUEUE, tracer
from orchestrator_api.consumer_watch import warn_unconsumed
from orchestrator_api.errors import BODY_ERRORS, ApiError, documented
from orchestrator_api.runtime import runtime_of
from orchestrator_api.schemas import BulkResponse, EnqueueResponse
from orchestrator_api.strict_json import StrictJsonRoute

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], route_class=StrictJsonRoute)

_ERRORS = {**BODY_ERRORS, **documented(409, e409="Idempotency key used with another body")}


def _job_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise JobNotFoundError(f"no job with id {text!r} (not a valid job id)") from None


def _check_cursor(cursor: str) -> None:
    try:
        created_at, _ = store.decode_cursor(cursor)
    except ValueError:
        created_at = None
    if created_at is None or created_at.tzinfo is None:
        raise ApiError(422, "invalid_request", "cursor: not a cursor this API returned")


@router.post("", status_code=201, response_model=EnqueueResponse, responses=_ERRORS)
async def create_job(body: EnqueueRequest, request: Request, response: Response) -> dict[str, Any]:
    """Create one job: Enqueued, Scheduled (a future delay) or Awaiting (a continuation)."""
    runtime = runtime_of(request)
    # A child of the request's server span; the job keeps this span's context.
    with tracer.start_as_current_span(f"enqueue {body.job}") as span:
        (prepared,) = await runtime.enqueuer.prepare([body], bulk=False)
        span.set_attributes({JOB_NAME: body.job, QUEUE: prepared.queue})
        outcome = await runtime.enqueuer.one(prepared)
        span.set_attribute(JOB_ID, str(outcome.id))
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    warn_unconsumed(runtime.consumers, [prepared.queue], response)
    return {"id": outcome.id, "state": outcome.state}


@router.post("/bulk", status_code=201, response_model=BulkResponse, responses=_ERRORS)
async def create_jobs(body: BulkRequest, request: Request, response: Response) -> dict[str, Any]:
    """Create many jobs in one transaction: all are stored, or none (the error names the index)."""
    runtime = runtime_of(request)
    with tracer.start_as_current_span(
        "enqueue bulk", attributes={"orchestrator.jobs": len(body.jobs)}
    ):
        prepared = await runtime.enqueuer.prepare(body.jobs, bulk=True)
        outcomes = await runtime.enqueuer.many(prepared)
    warn_unconsumed(runtime.consumers, [p.queue for p in prepared], response)
    return {"ids": [outcome.id for outcome in outcomes]}


@router.get("/{job_id}", responses=documented(404))
async def get_job(job_id: str, request: Request) -> dict[str, Any]:
    """The job with its history, oldest state first."""
    parsed = _job_id(job_id)
    runtime = runtime_of(request)
    async with runtime.engine.connect() as conn:
        row = await store.get_job(conn, parsed)
        history = await store.get_history(conn, parsed)
    view = public_job(row, history, max_result_bytes=runtime.settings.max_result_bytes)
    return redact_view(view, await runtime.catalog.all())


@router.get("", responses=documented(422))
async def list_jobs(
    request: Request,
    state: Annotated[str | None, Query(description="one of the seven state names")] = None,
    queue: Annotated[Text | None, Query(max_length=63)] = None,
    job: Annotated[Text | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """Newest first; pass ``next_cursor`` back as ``cursor`` for the next page. Items carry no
    ``result``: read one job for it."""
    state_filter = None
    if state is not None:
        try:
            state_filter = State(state)
        except ValueError:
            names = ", ".join(s.value for s in State)
            raise ApiError(422, "invalid_request", f"state: must be one of {names}") from None
    if cursor is not None:
        _check_cursor(cursor)
    where = store.JobFilter(state=state_filter, queue=queue, name=job)
    runtime = runtime_of(request)
    async with runtime.engine.connect() as conn:
        rows, next_cursor = await store.list_jobs(conn, where, limit=limit, cursor=cursor)
    registrations = await runtime.catalog.all()
    items = [redact_view(public_job(row), registrations) for row in rows]
    return {"items": items, "next_cursor": next_cursor}


@router.delete("/{job_id}", responses=documented(404))
async def delete_job(job_id: str, request: Request) -> dict[str, Any]:
    """Move the job to Deleted; deleting a Deleted job changes nothing. Election filters may
    have it enter another state instead; the answer names the state it entered."""
    parsed = _job_id(job_id)
    runtime = runtime_of(request)
    pending: list[Pending] = []
    state = State.DELETED.value
    async with runtime.engine.begin() as conn:
        row = await store.get_job(conn, parsed)
        changed = row.state != State.DELETED.value
        if changed:
            now = await db_now(conn)
            pending = await interventions.delete_job(
                conn, runtime.transitions, parsed, now, "Deleted through the API"
            )
            if runtime.transitions.elects:
                state = (await store.get_job(conn, parsed)).state
    runtime.submit(pending)  # continuations with continue_on="finished"
    if changed and state == State.DELETED.value:
        JOBS_DELETED.labels(row.queue, row.name).inc()
    if row.state == State.PROCESSING.value:  # every state it may enter leaves Processing
        await runtime.signal_cancel(parsed)
    return {"id": str(parsed), "state": state}


@router.post("/{job_id}/requeue", responses=documented(404, 409, e409="Enqueued or Processing"))
async def requeue_job(job_id: str, request: Request) -> dict[str, Any]:
    """Run the job again now with a fresh retry budget (not from Enqueued or Processing)."""
    parsed = _job_id(job_id)
    runtime = runtime_of(request)
    state = State.ENQUEUED.value
    async with runtime.engine.begin() as conn:
        now = await db_now(conn)
        pending = await interventions.requeue_job(
            conn, runtime.transitions, parsed, now, "Requeued through the API"
        )
        if runtime.transitions.elects:  # an election filter may have chosen another state
            state = (await store.get_job(conn, parsed)).state
        queue = pending[-1].message.queue if pending else None  # the requeue's own message
    runtime.submit(pending)
    if queue is not None and state == State.ENQUEUED.value:
        JOBS_REQUEUED.labels(queue).inc()
    return {"id": str(parsed), "state": state}
