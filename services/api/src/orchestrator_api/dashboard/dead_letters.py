"""Dead letters, newest first, as the janitor recorded them from ``<ns>.dead``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import bounds, dead_letters
from orchestrator.store import search as store_search
from orchestrator_api.dashboard.web import PREFIX, refusal, render
from orchestrator_api.runtime import runtime_of

router = APIRouter(prefix=PREFIX)

PAGE_SIZE: Final = 50
#: Characters of a body shown in the list.
_BODY_SHOWN = 300


async def existing_jobs(conn: AsyncConnection, ids: Iterable[uuid.UUID | None]) -> set[uuid.UUID]:
    """Which of ``ids`` name a job that still exists (one primary-key lookup per page)."""
    wanted = {job_id for job_id in ids if job_id is not None}
    if not wanted:
        return set()
    return await store_search.existing_jobs(conn, wanted)


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters_page(request: Request) -> HTMLResponse:
    after_text = request.query_params.get("after") or ""
    cursor = bounds.id_cursor(after_text) if after_text else None
    if after_text and cursor is None:
        return refusal(request, 400, "This page link is not valid any more; start again.")
    async with runtime_of(request).engine.connect() as conn:
        rows, after = await dead_letters.list_page(conn, limit=PAGE_SIZE, cursor=cursor)
        # Replay needs the job the letter names (dead_letters.replay): a message that names no
        # job, or a job that has expired, can only be discarded.
        present = await existing_jobs(conn, (row.job_id for row in rows))
    items = []
    for row in rows:
        public = dead_letters.public(row)
        body = public["body"]
        items.append(
            {
                **public,
                "first_seen": row.first_seen_at,
                "replayable": row.job_id in present,
                "body_shown": body if len(body) <= _BODY_SHOWN else body[:_BODY_SHOWN] + "…",
            }
        )
    next_url = f"/hangfire/dead-letters?after={after}" if after is not None else None
    return render(
        request, "dead_letters.html", title="Dead letters", items=items, next_url=next_url
    )
