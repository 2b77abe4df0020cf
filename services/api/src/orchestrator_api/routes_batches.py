"""``/api/v1/batches``: jobs created together, and one continuation once every one has ended.

A batch's continuation is a job created ``Awaiting`` with ``continue_on="batch"``; the state
machine enqueues it, exactly once, in the transaction that ends the last member for the first
time (``orchestrator.endings``). A member requeued afterwards runs again without firing it again.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from orchestrator import store
from orchestrator.db import db_now
from orchestrator.endings import BATCH
from orchestrator.errors import JobValidationError
from orchestrator.models import Batch
from orchestrator.states import State
from orchestrator.tracing import current_headers, tracer
from orchestrator_api.consumer_watch import warn_unconsumed
from orchestrator_api.enqueue import Prepared, new_job, parent_states, prepare
from orchestrator_api.errors import BODY_ERRORS, ApiError, documented
from orchestrator_api.runtime import Runtime, runtime_of
from orchestrator_api.schemas import MAX_BULK, EnqueueRequest
from orchestrator_api.strict_json import StrictJsonRoute

router = APIRouter(prefix="/api/v1/batches", tags=["batches"], route_class=StrictJsonRoute)
_batches = Batch.__table__  # type: ignore[attr-defined]
_ENDED = {"succeeded": State.SUCCEEDED, "failed": State.FAILED, "deleted": State.DELETED}


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[EnqueueRequest] = Field(min_length=1, max_length=MAX_BULK)
    on_complete: EnqueueRequest | None = Field(
        default=None, description="a job enqueued once, when every member has ended"
    )


class BatchResponse(BaseModel):
    id: uuid.UUID
    job_ids: list[uuid.UUID]
    continuation_id: uuid.UUID | None


def _check(body: BatchRequest) -> None:
    for index, job in enumerate(body.jobs):
        if job.idempotency_key is not None:
            raise JobValidationError(
                f"jobs[{index}]: idempotency_key is not supported inside a batch",
                field="idempotency_key",
            )
    done = body.on_complete
    if done is not None and (
        done.continue_after or done.delay_seconds is not None or done.run_at or done.idempotency_key
    ):
        raise JobValidationError(
            "on_complete: runs when the batch completes; it takes no continue_after, "
            "delay_seconds, run_at or idempotency_key",
            field="on_complete",
        )


async def _prepare_continuation(runtime: Runtime, body: BatchRequest) -> Prepared | None:
    if body.on_complete is None:
        return None
    try:
        (prepared,) = await prepare(runtime, [body.on_complete], bulk=False)
    except JobValidationError as exc:
        raise JobValidationError(f"on_complete: {exc}", field=exc.field) from None
    return prepared


@router.post("", status_code=201, response_model=BatchResponse, responses=BODY_ERRORS)
async def create_batch(body: BatchRequest, request: Request, response: Response) -> dict[str, Any]:
    """Create every member and the continuation in one transaction: all, or none."""
    runtime = runtime_of(request)
    _check(body)
    with tracer.start_as_current_span(
        "enqueue batch", attributes={"orchestrator.jobs": len(body.jobs)}
    ):
        members = await prepare(runtime, body.jobs, bulk=True)
        on_complete = await _prepare_continuation(runtime, body)
        trace = current_headers() or None
        batch_id = uuid.uuid4()
        async with runtime.engine.begin() as conn:
            now = await db_now(conn)
            parents = await parent_states(conn, members)
            jobs = [new_job(item, now, parents, trace) for item in members]
            for job in jobs:
                job.batch_id = batch_id
            if on_complete is not None:
                continuation = new_job(on_complete, now, {}, trace)
                continuation.state = State.AWAITING
                continuation.continue_on = BATCH
                continuation.reason = f"Awaiting batch {batch_id}"
                jobs.append(continuation)
            await conn.execute(
                sa.insert(_batches).values(
                    id=batch_id,
                    total=len(members),
                    ended=0,
                    continuation_id=jobs[-1].id if on_complete is not None else None,
                    created_at=now,
                )
            )
            pending = await store.create_jobs(conn, jobs, now)
    runtime.submit(pending)
    runtime.created(jobs)
    warn_unconsumed(runtime.consumers, [job.queue for job in jobs], response)
    return {
        "id": batch_id,
        "job_ids": [job.id for job in jobs[: len(members)]],
        "continuation_id": jobs[-1].id if on_complete is not None else None,
    }


@router.get("/{batch_id}", responses=documented(404))
async def get_batch(batch_id: str, request: Request) -> dict[str, Any]:
    """Progress: members per outcome, ``pending`` (not ended yet), ``state`` ``running`` or
    ``completed`` (every member has ended at least once; the continuation was enqueued)."""
    try:
        parsed = uuid.UUID(batch_id)
    except ValueError:
        raise ApiError(404, "not_found", f"no batch with id {batch_id!r}") from None
    jobs = store.jobs_table
    async with runtime_of(request).engine.connect() as conn:
        batch = (await conn.execute(sa.select(_batches).where(_batches.c.id == parsed))).first()
        if batch is None:
            raise ApiError(404, "not_found", f"no batch with id {batch_id}")
        rows = await conn.execute(
            sa.select(jobs.c.state, sa.func.count())
            .where(jobs.c.batch_id == parsed)
            .group_by(jobs.c.state)
        )
        counts: dict[str, int] = {str(state): int(n) for state, n in rows.all()}
    view: dict[str, Any] = {"id": str(parsed), "total": batch.total}
    for key, state in _ENDED.items():
        view[key] = counts.get(state.value, 0)
    view["pending"] = sum(n for s, n in counts.items() if s not in _ENDED_VALUES)
    view["state"] = "completed" if batch.completed_at is not None else "running"
    view["continuation_id"] = str(batch.continuation_id) if batch.continuation_id else None
    view["completed_at"] = batch.completed_at.isoformat() if batch.completed_at else None
    return view


_ENDED_VALUES = frozenset(state.value for state in _ENDED.values())
