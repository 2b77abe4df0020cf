"""Batches, newest first, with each one's progress."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from orchestrator import store
from orchestrator.lifecycle import State, has_ended
from orchestrator.models import Batch
from orchestrator_api.dashboard.web import PREFIX, refusal, render
from orchestrator_api.runtime import runtime_of

router = APIRouter(prefix=PREFIX)

_batches = Batch.__table__  # type: ignore[attr-defined]
PAGE_SIZE: Final = 50


async def _progress(conn: Any, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, int]]:
    """Per batch, its members per state (partial index ``ix_jobs_batch``)."""
    if not ids:
        return {}
    jobs = store.jobs_table
    query = (
        sa.select(jobs.c.batch_id, jobs.c.state, sa.func.count())
        .where(jobs.c.batch_id.in_(ids))
        .group_by(jobs.c.batch_id, jobs.c.state)
    )
    counts: dict[uuid.UUID, dict[str, int]] = {batch_id: {} for batch_id in ids}
    for batch_id, state, count in await conn.execute(query):
        counts[batch_id][state] = int(count)
    return counts


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
    query = sa.select(_batches)
    if after is not None:
        query = query.where(sa.tuple_(_batches.c.created_at, _batches.c.id) < sa.tuple_(*after))
    query = query.order_by(_batches.c.created_at.desc(), _batches.c.id.desc()).limit(PAGE_SIZE + 1)
    async with runtime_of(request).engine.connect() as conn:
        rows = list((await conn.execute(query)).all())
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        counts = await _progress(conn, [row.id for row in rows])
    items = []
    for row in rows:
        states = counts[row.id]
        ended = sum(n for s, n in states.items() if has_ended(s))
        items.append(
            {
                "row": row,
                "succeeded": states.get(State.SUCCEEDED.value, 0),
                "failed": states.get(State.FAILED.value, 0),
                "deleted": states.get(State.DELETED.value, 0),
                "pending": sum(states.values()) - ended,
                "ended": ended,
            }
        )
    next_url = None
    if more:
        last = rows[-1]
        next_url = f"/hangfire/batches?after={last.created_at.isoformat()}_{last.id}"
    return render(request, "batches.html", title="Batches", items=items, next_url=next_url)
