"""Job lists (one page for every state, with filters and sorts), retries, and job details."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from orchestrator import bounds, job_search, store
from orchestrator.db import db_now
from orchestrator.errors import JobNotFoundError
from orchestrator.job_view import history_entry, public_job
from orchestrator.lifecycle import REQUEUEABLE, State
from orchestrator.outcomes import showable_result
from orchestrator.store import search as store_search
from orchestrator_api.dashboard.web import (
    PREFIX,
    display_arguments,
    not_found,
    refusal,
    render,
    shown,
    state_counts,
)
from orchestrator_api.runtime import runtime_of

router = APIRouter(prefix=PREFIX)

PAGE_SIZE: Final = 50
#: Scheduled and Awaiting jobs are "enqueued now"; the others that may run again are requeued.
WAITING: Final = frozenset({State.SCHEDULED, State.AWAITING})
SORT_LABELS: Final = {
    "-created": "Newest first",
    "created": "Oldest first",
    "name": "Name A to Z",
    "-name": "Name Z to A",
}
#: Argument text longer than this is cut in lists (the details page shows all of it).
_LIST_ARGUMENTS = 120


#: The longest text a filter takes (names are at most 200 characters).
_MAX_FILTER: Final = 500
_TOO_SLOW = (
    "The text search took too long and was stopped. Narrow it with a state, queue, job name or "
    "time range (or ask for the trigram index described in docs/dashboard.md)."
)


class BadFilterError(ValueError):
    """A query parameter the list cannot use; shown to the viewer with 400."""


def _time_param(text: str, label: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise BadFilterError(f"{label}: not a date and time (use 2026-11-28T09:30, UTC)") from None
    try:
        return bounds.check_instant(value if value.tzinfo else value.replace(tzinfo=UTC), label)
    except bounds.BoundsError as exc:
        raise BadFilterError(str(exc)) from None


def _text_param(params: Mapping[str, str], key: str, label: str) -> str | None:
    """A text filter, or None when empty; text no store can compare is refused."""
    text = params.get(key, "").strip()
    if len(text) > _MAX_FILTER:
        raise BadFilterError(f"{label}: longer than {_MAX_FILTER} characters")
    try:
        return bounds.check_text(text, label) or None
    except bounds.BoundsError as exc:
        raise BadFilterError(str(exc)) from None


def parse_search(params: Mapping[str, str]) -> job_search.Search:
    state_text = params.get("state", "")
    try:
        state = State(state_text) if state_text else None
    except ValueError:
        raise BadFilterError(f"State: {state_text!r} is not a state") from None
    sort = params.get("sort") or "-created"
    if sort not in job_search.SORTS:
        raise BadFilterError(f"Sort: {sort!r} is not one of {', '.join(job_search.SORTS)}")
    return job_search.Search(
        state=state,
        queue=_text_param(params, "queue", "Queue"),
        name=_text_param(params, "name", "Job name"),
        text=_text_param(params, "q", "Text in arguments"),
        created_from=_time_param(params.get("from", ""), "From"),
        created_to=_time_param(params.get("to", ""), "To"),
        sort=sort,
    )


def row_view(
    row: Any, registrations: Mapping[str, Any], now: datetime | None = None
) -> dict[str, Any]:
    """A job as a list row shows it, with the actions its state allows. ``now`` (the
    database's) gives a Processing job how long it has been running."""
    state = State(row.state)
    arguments = display_arguments(registrations, row.name, row.args, row.kwargs)
    if len(arguments) > _LIST_ARGUMENTS:
        arguments = arguments[: _LIST_ARGUMENTS - 1] + "…"
    return {
        "id": str(row.id),
        "name": row.name,
        "queue": row.queue,
        "state": row.state,
        "attempt": row.attempt,
        "arguments": arguments,
        "created_at": row.created_at,
        "state_changed_at": row.state_changed_at,
        "due_at": row.due_at,
        "started_at": row.started_at,
        "worker": row.worker_id,
        "duration": run_seconds(state, row.started_at, row.finished_at, now),
        "can_enqueue_now": state in WAITING,
        "can_requeue": state in REQUEUEABLE and state not in WAITING,
        "can_delete": state is not State.DELETED,
    }


#: The lists that show when a job ran, on which worker and for how long: what the job row
#: holds of its latest attempt (``started_at``, ``worker_id``, ``finished_at``).
RAN: Final = frozenset({State.PROCESSING, State.SUCCEEDED, State.FAILED})


def run_seconds(
    state: State, started: datetime | None, finished: datetime | None, now: datetime | None
) -> float | None:
    """How long the latest attempt ran (Processing: so far); None when the row cannot say
    (never started, e.g. failed by a dead letter, or finished before it started again)."""
    if started is None or state not in RAN:
        return None
    end = now if state is State.PROCESSING else finished
    if end is None or end < started:
        return None
    return (end - started).total_seconds()


def list_url(params: Mapping[str, str], **changes: str | None) -> str:
    """This list's URL with some parameters changed (None removes one); empty ones dropped."""
    merged = {**params, **changes}
    query = {k: v for k, v in merged.items() if v}
    return "/hangfire/jobs" + ("?" + urlencode(query) if query else "")


@router.get("/jobs", response_class=HTMLResponse)
async def job_list(request: Request) -> HTMLResponse:
    params = {k: v for k, v in request.query_params.items() if k != "after"}
    try:
        where = parse_search(request.query_params)
    except BadFilterError as exc:
        return refusal(request, 400, str(exc))
    runtime = runtime_of(request)
    after = request.query_params.get("after") or None
    registrations = await runtime.catalog.all()
    # Text search skips secret arguments, as the page redacts them.
    where = replace(where, hidden=job_search.hidden_arguments(registrations))
    async with runtime.engine.connect() as conn:
        try:
            page = await store_search.search(conn, where, limit=PAGE_SIZE, after=after)
        except ValueError:
            return refusal(request, 400, "This page link is not valid any more; start again.")
        except job_search.SearchTooSlowError:
            return refusal(request, 422, _TOO_SLOW)
        tabs = await state_counts(request, conn)
        now = await db_now(conn) if where.state is State.PROCESSING else None
        queues = []
        if where.state is State.ENQUEUED:
            for name in await store_search.queue_names(conn):
                count = await store_search.bounded_count(
                    conn, job_search.Search(state=State.ENQUEUED, queue=name)
                )
                queues.append((name, count, list_url(params, queue=name)))
    return render(
        request,
        "jobs.html",
        title="Jobs",
        where=where,
        params=params,
        rows=[row_view(row, registrations, now) for row in page.rows],
        ran=where.state if where.state in RAN else None,
        next_url=list_url(params, after=page.next_cursor) if page.next_cursor else None,
        first_url=list_url(params) if after else None,
        tabs=[(s.value, tabs[s.value], list_url({"state": s.value})) for s in State],
        all_url=list_url({}),
        queues=queues,
        states=[s.value for s in State],
        sorts=SORT_LABELS,
        sort_urls={key: list_url(params, sort=key) for key in SORT_LABELS},
        job_names=sorted(registrations),
        this_url=list_url(params, after=after),
        show_failed_action=where.state is State.FAILED,
    )


@router.get("/retries", response_class=HTMLResponse)
async def retries(request: Request) -> HTMLResponse:
    """Jobs waiting for an automatic retry (Scheduled with reason "retry"), soonest first."""
    runtime = runtime_of(request)
    after = request.query_params.get("after") or None
    where = job_search.Search(retries_only=True)
    async with runtime.engine.connect() as conn:
        try:
            page = await store_search.search(conn, where, limit=PAGE_SIZE, after=after)
        except ValueError:
            return refusal(request, 400, "This page link is not valid any more; start again.")
        count = await store_search.bounded_count(conn, where)
    registrations = await runtime.catalog.all()
    rows = [row_view(row, registrations) for row in page.rows]
    next_url = f"/hangfire/retries?after={page.next_cursor}" if page.next_cursor else None
    return render(
        request,
        "retries.html",
        title="Retries",
        rows=rows,
        count=count,
        next_url=next_url,
        this_url="/hangfire/retries" + (f"?after={after}" if after else ""),
    )


async def _related(conn: Any, row: Any) -> dict[str, Any]:
    parent = None
    if row.parent_id is not None:
        parent = await store_search.linked_job(conn, row.parent_id)
    return {"parent": parent, "continuations": await store_search.continuations(conn, row.id)}


def _history_entry(row: Any) -> SimpleNamespace:
    """A history row for the job page: as stored, with its failed attempt's exception apart
    from its other data (as the API's job read shows it)."""
    entry = shown(row)
    split = history_entry(row)
    entry.data, entry.error = split["data"], split["error"]
    return entry


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_details(job_id: str, request: Request) -> HTMLResponse:
    try:
        parsed = uuid.UUID(job_id)
    except ValueError:
        return not_found(request, "Job not found", f"No job with id {job_id!r}: not a job id.")
    runtime = runtime_of(request)
    async with runtime.engine.connect() as conn:
        try:
            row = await store.get_job(conn, parsed)
        except JobNotFoundError:
            message = f"No job with id {parsed} (it may have expired)."
            return not_found(request, "Job not found", message)
        history = await store.get_history(conn, parsed)
        related = await _related(conn, row)
        now = await db_now(conn)
    registrations = await runtime.catalog.all()
    public = public_job(row, history)
    state = State(row.state)
    job = shown(row)
    job.result = showable_result(row.result, runtime.settings.max_result_bytes)
    return render(
        request,
        "job.html",
        title="Job details",
        job=job,
        view=row_view(row, registrations),
        arguments=display_arguments(registrations, row.name, row.args, row.kwargs),
        history=[_history_entry(h) for h in reversed(history)],
        error=public["error"],
        overrunning_since=public.get("overrunning_since"),
        expires_in=(row.expires_at - now).total_seconds() if row.expires_at else None,
        parent=related["parent"],
        continuations=related["continuations"],
        this_url=f"/hangfire/jobs/{parsed}",
        final=state in (State.SUCCEEDED, State.DELETED),
    )
