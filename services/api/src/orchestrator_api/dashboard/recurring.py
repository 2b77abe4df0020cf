"""Recurring jobs: cron (with its description in words), time zone, next and last run with the
last job's state, paused, error."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from orchestrator import recurring
from orchestrator_api.dashboard.cron_text import describe
from orchestrator_api.dashboard.web import PREFIX, display_arguments, render
from orchestrator_api.runtime import runtime_of

router = APIRouter(prefix=PREFIX)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _view(item: dict[str, Any], registrations: Any) -> dict[str, Any]:
    """The API's view of a definition, with times as datetimes and arguments as shown."""
    return {
        **item,
        "arguments": display_arguments(registrations, item["job"], item["args"], item["kwargs"]),
        "described": describe(item["cron"], item["timezone"]),
        "next_run": _time(item["next_run_at"]),
        "last_run": _time(item["last_run_at"]),
    }


@router.get("/recurring", response_class=HTMLResponse)
async def recurring_page(request: Request) -> HTMLResponse:
    runtime = runtime_of(request)
    async with runtime.engine.connect() as conn:
        items = await recurring.read_all(conn)
    registrations = await runtime.catalog.all()
    return render(
        request,
        "recurring.html",
        title="Recurring",
        items=[_view(item, registrations) for item in items],
    )
