"""Batches, newest first, with each one's progress; a batch's own page lists its members."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import job_search
from orchestrator.lifecycle import State, has_ended
from orchestrator.store import batches as store_batches
from orchestrator.store import search as store_search
from orchestrator_api.dashboard.jobs import row_view
from orchestrator_api.dashboard.web import PREFIX, not_found, refusal, render
from orchestrator_api.runtime import runtime_of

router = APIRouter(prefix=PREFIX)

PAGE_SIZE: Final = 50


def _summary(row: Any, states: dict[str, int]) -> dict[str, Any]:
    ended = sum(n for s, n in states.items() if has_ended(s))
    return {
        "row": row,
        "states": states,
        "succeeded": states.get(State.SUCCEEDED.value, 0),
        "failed": states.get(State.FAILED.value, 0),
        "deleted": states.get(State.DELETED.value, 0),
        "pending": sum(states.values()) - ended,
        "ended": ended,
    }


def _cursor(text: str | None) -> tuple[datetime, uuid.UUID] | None:
    if not text:
        return None
    created, _, batch_id = text.partition("_")
    parsed = datetime.fromisoformat(created)
    if parsed.tzinfo is None:
        raise ValueError("naive cursor")
    return parsed, uuid.UUID(batch_id)


@router.get("/batches", response_class=HTMLResponse)
async def batches(request: Request) -> HTMLResponse:
    try:
        after = _cursor(request.query_params.get("after"))
    except ValueError:
        return refusal(request, 400, "This page link is not valid any more; start again.")
    async with runtime_of(request).engine.connect() as conn:
        rows = await store_batches.newest(conn, limit=PAGE_SIZE + 1, after=after)
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        counts = await store_batches.progress(conn, [row.id for row in rows])
    items = [_summary(row, counts[row.id]) for row in rows]
    next_url = None
    if more:
        last = rows[-1]
        next_url = f"/hangfire/batches?after={last.created_at.isoformat()}_{last.id}"
    return render(request, "batches.html", title="Batches", items=items, next_url=next_url)


async def _members(
    conn: AsyncConnection, batch_id: uuid.UUID, state: State | None, after: str | None
) -> job_search.Page:
    """One page of the batch's members in creation order (ties by id), keyset-paged."""
    bound = job_search.decode_cursor("created", after) if after is not None else None
    rows = await store_batches.members(
        conn, batch_id, state=state, after=bound, limit=PAGE_SIZE + 1
    )
    if len(rows) <= PAGE_SIZE:
        return job_search.Page(rows, None)
    rows = rows[:PAGE_SIZE]
    return job_search.Page(rows, job_search.encode_cursor([rows[-1].created_at, rows[-1].id]))


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
async def batch_page(batch_id: str, request: Request) -> HTMLResponse:
    """One batch: its progress per state, its continuation, and its members with theirs."""
    try:
        parsed = uuid.UUID(batch_id)
    except ValueError:
        return not_found(request, "Batch not found", f"No batch with id {batch_id!r}: not an id.")
    state_text = request.query_params.get("state") or ""
    try:
        state = State(state_text) if state_text else None
    except ValueError:
        return refusal(request, 400, f"State: {state_text!r} is not a state.")
    after = request.query_params.get("after") or None
    runtime = runtime_of(request)
    async with runtime.engine.connect() as conn:
        row = await store_batches.get(conn, parsed)
        if row is None:
            message = (
                f"No batch with id {parsed} (a completed batch is removed after the jobs' "
                "retention period)."
            )
            return not_found(request, "Batch not found", message)
        try:
            page = await _members(conn, parsed, state, after)
        except ValueError:
            return refusal(request, 400, "This page link is not valid any more; start again.")
        counts = (await store_batches.progress(conn, [parsed]))[parsed]
        continuation = None
        if row.continuation_id is not None:
            continuation = await store_search.linked_job(conn, row.continuation_id)
    registrations = await runtime.catalog.all()
    here = f"/hangfire/batches/{parsed}"
    filtered = f"{here}?state={state.value}" if state else here
    return render(
        request,
        "batch.html",
        title="Batch",
        batch=_summary(row, counts),
        continuation=continuation,
        rows=[row_view(member, registrations) for member in page.rows],
        state=state,
        state_urls=[(s.value, counts.get(s.value, 0), f"{here}?state={s.value}") for s in State],
        all_url=here,
        this_url=filtered + (f"{'&' if state else '?'}after={after}" if after else ""),
        next_url=(
            f"{filtered}{'&' if state else '?'}after={page.next_cursor}"
            if page.next_cursor
            else None
        ),
        first_url=filtered if after else None,
    )
