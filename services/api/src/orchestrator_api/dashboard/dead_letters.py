"""Dead letters, newest first, as the janitor recorded them from ``<ns>.dead``."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from orchestrator import bounds, dead_letters
from orchestrator_api.dashboard.web import PREFIX, refusal, render
from orchestrator_api.runtime import runtime_of

router = APIRouter(prefix=PREFIX)

PAGE_SIZE: Final = 50
#: Characters of a body shown in the list.
_BODY_SHOWN = 300


@router.get("/dead-letters", response_class=HTMLResponse)
async def dead_letters_page(request: Request) -> HTMLResponse:
    after_text = request.query_params.get("after") or ""
    cursor = bounds.id_cursor(after_text) if after_text else None
    if after_text and cursor is None:
        return refusal(request, 400, "This page link is not valid any more; start again.")
    async with runtime_of(request).engine.connect() as conn:
        rows, after = await dead_letters.list_page(conn, limit=PAGE_SIZE, cursor=cursor)
    items = []
    for row in rows:
        public = dead_letters.public(row)
        body = public["body"]
        items.append(
            {
                **public,
                "first_seen": row.first_seen_at,
                "body_shown": body if len(body) <= _BODY_SHOWN else body[:_BODY_SHOWN] + "…",
            }
        )
    next_url = f"/hangfire/dead-letters?after={after}" if after is not None else None
    return render(
        request, "dead_letters.html", title="Dead letters", items=items, next_url=next_url
    )
