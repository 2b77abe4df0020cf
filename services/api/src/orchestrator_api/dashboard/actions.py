"""Every dashboard action: a POST form, checked (CSRF token, admin role) before anything is read
or changed, that calls the same function as the HTTP API's endpoint (so the rules, the history
reasons, the metrics and the cancel signal to a running job's worker are the API's own), then
redirects (303) back with the result shown in the page's status element."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import Response

from orchestrator.errors import (
    ConflictError,
    IllegalTransitionError,
    JobNotFoundError,
    JobValidationError,
)
from orchestrator.store import search as store_search
from orchestrator_api import routes_dead_letters, routes_jobs, routes_recurring
from orchestrator_api.dashboard.web import (
    PREFIX,
    CsrfError,
    ReadOnlyError,
    checked_form,
    done,
    plural,
    refusal,
    safe_next,
)
from orchestrator_api.errors import ApiError
from orchestrator_api.routes_dead_letters import LetterId
from orchestrator_api.routes_recurring import RecurringId
from orchestrator_api.runtime import runtime_of

router = APIRouter(prefix=PREFIX)

#: "Requeue all failed" requeues at most this many per press (oldest first), so one request
#: stays short; the message says when more remain.
REQUEUE_ALL_LIMIT: Final = 1000
#: Jobs one bulk action may name (a list page shows 50).
MAX_SELECTED: Final = 500
#: Errors that describe why an action could not be done (not found, wrong state, …).
EXPECTED = (JobNotFoundError, ConflictError, IllegalTransitionError, JobValidationError, ApiError)

Action = Callable[[dict[str, Any]], Awaitable[str]]


async def act(request: Request, default_next: str, action: Action) -> Response:
    try:
        form = await checked_form(request)
    except CsrfError:
        return refusal(
            request,
            403,
            "The form's security token is missing or wrong: reload the page "
            "and try again. Nothing was changed.",
        )
    except ReadOnlyError:
        return refusal(request, 403, "This key may only read. Nothing was changed.")
    to = safe_next(form.get("next"), default_next)
    try:
        message = await action(form)
    except EXPECTED as exc:
        return done(request, to, str(exc), ok=False)
    return done(request, to, message)


def _job_path(job_id: uuid.UUID) -> str:
    return f"/hangfire/jobs/{job_id}"


def _parse_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise JobNotFoundError(f"no job with id {text!r}") from None


# -- one job ------------------------------------------------------------------------------------


@router.post("/jobs/{job_id}/requeue")
async def requeue(job_id: str, request: Request) -> Response:
    async def run(_: dict[str, Any]) -> str:
        parsed = _parse_id(job_id)
        await routes_jobs.requeue_job(str(parsed), request)
        return f"Job {parsed} requeued."

    return await act(request, f"/hangfire/jobs/{job_id}", run)


@router.post("/jobs/{job_id}/enqueue")
async def enqueue_now(job_id: str, request: Request) -> Response:
    """Enqueue a Scheduled or Awaiting job now: the API's requeue, which allows exactly those
    besides the ended states."""

    async def run(_: dict[str, Any]) -> str:
        parsed = _parse_id(job_id)
        await routes_jobs.requeue_job(str(parsed), request)
        return f"Job {parsed} enqueued now."

    return await act(request, f"/hangfire/jobs/{job_id}", run)


@router.post("/jobs/{job_id}/delete")
async def delete(job_id: str, request: Request) -> Response:
    """The API's DELETE: a Processing job's worker is told to cancel it."""

    async def run(_: dict[str, Any]) -> str:
        parsed = _parse_id(job_id)
        await routes_jobs.delete_job(str(parsed), request)
        return f"Job {parsed} deleted."

    return await act(request, f"/hangfire/jobs/{job_id}", run)


# -- many jobs ----------------------------------------------------------------------------------


async def _each(
    request: Request, ids: list[str], one: Callable[[str, Request], Awaitable[Any]], verb: str
) -> str:
    """Apply ``one`` (an API endpoint function) to each job; say how many it changed and why
    the others were left alone."""
    if not ids:
        return "No jobs were selected."
    if len(ids) > MAX_SELECTED:
        raise ApiError(422, "too_many", f"select at most {MAX_SELECTED} jobs at once")
    changed = 0
    refused: list[str] = []
    for text in ids:
        try:
            await one(str(_parse_id(text)), request)
            changed += 1
        except EXPECTED as exc:
            refused.append(str(exc))
    message = f"{verb} {changed} of {plural(len(ids), 'job')}."
    if refused:
        message += f" Not changed: {refused[0]}" + (
            f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        )
    return message


@router.post("/actions/requeue-selected")
async def requeue_selected(request: Request) -> Response:
    async def run(form: dict[str, Any]) -> str:
        return await _each(request, form.get("job", []), routes_jobs.requeue_job, "Requeued")

    return await act(request, "/hangfire/jobs", run)


@router.post("/actions/delete-selected")
async def delete_selected(request: Request) -> Response:
    async def run(form: dict[str, Any]) -> str:
        return await _each(request, form.get("job", []), routes_jobs.delete_job, "Deleted")

    return await act(request, "/hangfire/jobs", run)


@router.post("/actions/requeue-failed")
async def requeue_all_failed(request: Request) -> Response:
    async def run(_: dict[str, Any]) -> str:
        async with runtime_of(request).engine.connect() as conn:
            ids = await store_search.failed_ids(conn, REQUEUE_ALL_LIMIT)
        if not ids:
            return "There are no failed jobs."
        message = await _each_failed(request, ids)
        if len(ids) == REQUEUE_ALL_LIMIT:
            message += f" At most {REQUEUE_ALL_LIMIT} are requeued per press; press again."
        return message

    return await act(request, "/hangfire/jobs?state=Failed", run)


async def _each_failed(request: Request, ids: list[uuid.UUID]) -> str:
    changed = 0
    for job_id in ids:
        try:
            await routes_jobs.requeue_job(str(job_id), request)
            changed += 1
        except EXPECTED:
            pass  # changed state meanwhile (e.g. requeued by someone else)
    return f"Requeued {plural(changed, 'failed job')}."


# -- recurring jobs -----------------------------------------------------------------------------


@router.post("/recurring/{recurring_id}/trigger")
async def trigger(recurring_id: RecurringId, request: Request) -> Response:
    async def run(_: dict[str, Any]) -> str:
        answer = await routes_recurring.trigger(recurring_id, request)
        return f"Recurring job {recurring_id!r} triggered: job {answer['job_id']}."

    return await act(request, "/hangfire/recurring", run)


@router.post("/recurring/{recurring_id}/pause")
async def pause(recurring_id: RecurringId, request: Request) -> Response:
    async def run(_: dict[str, Any]) -> str:
        await routes_recurring.pause(recurring_id, request)
        return f"Recurring job {recurring_id!r} paused."

    return await act(request, "/hangfire/recurring", run)


@router.post("/recurring/{recurring_id}/resume")
async def resume(recurring_id: RecurringId, request: Request) -> Response:
    async def run(_: dict[str, Any]) -> str:
        await routes_recurring.resume(recurring_id, request)
        return f"Recurring job {recurring_id!r} resumed."

    return await act(request, "/hangfire/recurring", run)


@router.post("/recurring/{recurring_id}/delete")
async def delete_recurring(recurring_id: RecurringId, request: Request) -> Response:
    async def run(_: dict[str, Any]) -> str:
        await routes_recurring.delete_recurring(recurring_id, request)
        return f"Recurring job {recurring_id!r} deleted (runs already created stay)."

    return await act(request, "/hangfire/recurring", run)


# -- dead letters -------------------------------------------------------------------------------


@router.post("/dead-letters/{letter_id}/replay")
async def replay(letter_id: LetterId, request: Request) -> Response:
    async def run(_: dict[str, Any]) -> str:
        answer = await routes_dead_letters.replay_dead_letter(letter_id, request)
        return f"Dead letter {letter_id} replayed: job {answer['job_id']} {answer['action']}."

    return await act(request, "/hangfire/dead-letters", run)


@router.post("/dead-letters/{letter_id}/discard")
async def discard(letter_id: LetterId, request: Request) -> Response:
    async def run(_: dict[str, Any]) -> str:
        await routes_dead_letters.discard_dead_letter(letter_id, request)
        return f"Dead letter {letter_id} discarded."

    return await act(request, "/hangfire/dead-letters", run)
