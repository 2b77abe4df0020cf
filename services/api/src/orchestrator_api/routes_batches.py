"""``/api/v1/batches``: jobs created together, and one continuation once every one has ended.

A batch's continuation is a job created ``Awaiting`` with ``continue_on="batch"``; the state
machine enqueues it, exactly once, in the transaction that ends the last member for the first
time (``orchestrator.endings``). A member requeued afterwards runs again without firing it again.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.enqueue_requests import MAX_BULK, EnqueueRequest
from orchestrator.lifecycle import State, has_ended
from orchestrator.store import batches as store_batches
from orchestrator.tracing import tracer
from orchestrator_api.consumer_watch import warn_unconsumed
from orchestrator_api.errors import BODY_ERRORS, ApiError, documented
from orchestrator_api.runtime import runtime_of
from orchestrator_api.strict_json import StrictJsonRoute

router = APIRouter(prefix="/api/v1/batches", tags=["batches"], route_class=StrictJsonRoute)


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


@router.post("", status_code=201, response_model=BatchResponse, responses=BODY_ERRORS)
async def create_batch(body: BatchRequest, request: Request, response: Response) -> dict[str, Any]:
    """Create every member and the continuation in one transaction: all, or none."""
    runtime = runtime_of(request)
    with tracer.start_as_current_span(
        "enqueue batch", attributes={"orchestrator.jobs": len(body.jobs)}
    ):
        stored = await runtime.enqueuer.batch(body.jobs, body.on_complete)
    warn_unconsumed(runtime.consumers, [job.queue for job in stored.jobs], response)
    return {
        "id": stored.batch_id,
        "job_ids": [outcome.id for outcome in stored.outcomes[: len(body.jobs)]],
        "continuation_id": stored.continuation_id,
    }


@router.get("/{batch_id}", responses=documented(404))
async def get_batch(batch_id: str, request: Request) -> dict[str, Any]:
    """Progress: members per outcome, ``pending`` (not ended yet), ``state`` ``running`` or
    ``completed`` (every member has ended at least once; the continuation was enqueued)."""
    try:
        parsed = uuid.UUID(batch_id)
    except ValueError:
        raise ApiError(404, "not_found", f"no batch with id {batch_id!r}") from None
    async with runtime_of(request).engine.connect() as conn:
        batch = await store_batches.get(conn, parsed)
        if batch is None:
            raise ApiError(404, "not_found", f"no batch with id {batch_id}")
        counts = await store_batches.members_per_state(conn, parsed)
    view: dict[str, Any] = {"id": str(parsed), "total": batch.total}
    for state in (State.SUCCEEDED, State.FAILED, State.DELETED):
        view[state.value.lower()] = counts.get(state.value, 0)
    view["pending"] = sum(n for s, n in counts.items() if not has_ended(s))
    view["state"] = "completed" if batch.completed_at is not None else "running"
    view["continuation_id"] = str(batch.continuation_id) if batch.continuation_id else None
    view["completed_at"] = batch.completed_at.isoformat() if batch.completed_at else None
    return view
