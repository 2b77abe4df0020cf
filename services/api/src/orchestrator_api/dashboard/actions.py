"""Every dashboard action: a POST form, checked (CSRF token, admin role) before anything is read
or changed, that calls the same function as the HTTP API's endpoint (so the rules, the history
reasons, the metrics and the cancel signal to a running job's worker are the API's own), then
redirects (303) back with the result shown in the page's status element.

The actions are a table (:data:`ACTIONS`): one entry each says its path, what it applies to (an
id in the path, the jobs a form lists, every failed job), the API endpoint function it calls and
its message; one handler (:func:`act`) runs them all.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
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

#: An HTTP API endpoint function: called with the id it acts on and the request.
Endpoint = Callable[[Any, Request], Awaitable[Mapping[str, Any]]]


def _job_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise JobNotFoundError(f"no job with id {text!r}") from None


# -- what an action applies to ------------------------------------------------------------------


@dataclass(frozen=True)
class PathId:
    """One id in the path, checked by its type as the API's own route checks it; ``parse``
    turns it into the value the endpoint takes. The message is formatted with the id under
    its name and the endpoint's answer as ``answer``."""

    name: str
    annotation: Any
    parse: Callable[[Any], Any] = lambda value: value

    async def run(self, action: Action, request: Request, values: dict[str, Any], _: Any) -> str:
        value = self.parse(values[self.name])
        answer = await action.endpoint(value, request)
        return action.message.format(**{self.name: value}, answer=answer)


@dataclass(frozen=True)
class ListedJobs:
    """The jobs a form field lists (the checked rows of a list). Each one the endpoint refuses
    is left alone; the message is formatted with ``changed`` (a number) and ``selected`` (the
    jobs listed, counted), and says why the others were not changed."""

    field: str

    async def run(self, action: Action, request: Request, _: Any, form: dict[str, Any]) -> str:
        ids = form.get(self.field, [])
        if not ids:
            return "No jobs were selected."
        if len(ids) > MAX_SELECTED:
            raise ApiError(422, "too_many", f"select at most {MAX_SELECTED} jobs at once")
        changed = 0
        refused: list[str] = []
        for text in ids:
            try:
                await action.endpoint(_job_id(text), request)
                changed += 1
            except EXPECTED as exc:
                refused.append(str(exc))
        message = action.message.format(changed=changed, selected=plural(len(ids), "job"))
        if refused:
            message += f" Not changed: {refused[0]}" + (
                f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            )
        return message


@dataclass(frozen=True)
class FailedJobs:
    """Every failed job, the oldest ``limit`` per press. One that changed state meanwhile (e.g.
    requeued by someone else) is skipped; the message is formatted with ``changed`` (the jobs
    changed, counted)."""

    limit: int

    async def run(self, action: Action, request: Request, _: Any, __: Any) -> str:
        async with runtime_of(request).engine.connect() as conn:
            ids = await store_search.failed_ids(conn, self.limit)
        if not ids:
            return "There are no failed jobs."
        changed = 0
        for job_id in ids:
            try:
                await action.endpoint(str(job_id), request)
                changed += 1
            except EXPECTED:
                pass
        message = action.message.format(changed=plural(changed, "failed job"))
        if len(ids) == self.limit:
            message += f" At most {self.limit} are requeued per press; press again."
        return message


# -- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """A POST to ``path`` (under the dashboard's prefix) that applies ``endpoint`` to what
    ``applies_to`` names, then returns to ``back`` (formatted with the path's values; the form's
    ``next`` field, a dashboard path, goes first) showing ``message``."""

    path: str
    applies_to: PathId | ListedJobs | FailedJobs
    endpoint: Endpoint
    message: str
    back: str


JOB = PathId("job_id", str, _job_id)
RECURRING = PathId("recurring_id", RecurringId)
LETTER = PathId("letter_id", LetterId)

ACTIONS: Final = (
    # One job. "Enqueue now" (a Scheduled or Awaiting job) is the API's requeue, which allows
    # exactly those besides the ended states; delete tells a Processing job's worker to cancel.
    Action("/jobs/{job_id}/requeue", JOB, routes_jobs.requeue_job,
           "Job {job_id} requeued.", back="/hangfire/jobs/{job_id}"),
    Action("/jobs/{job_id}/enqueue", JOB, routes_jobs.requeue_job,
           "Job {job_id} enqueued now.", back="/hangfire/jobs/{job_id}"),
    Action("/jobs/{job_id}/delete", JOB, routes_jobs.delete_job,
           "Job {job_id} deleted.", back="/hangfire/jobs/{job_id}"),
    # Many jobs.
    Action("/actions/requeue-selected", ListedJobs("job"), routes_jobs.requeue_job,
           "Requeued {changed} of {selected}.", back="/hangfire/jobs"),
    Action("/actions/delete-selected", ListedJobs("job"), routes_jobs.delete_job,
           "Deleted {changed} of {selected}.", back="/hangfire/jobs"),
    Action("/actions/requeue-failed", FailedJobs(REQUEUE_ALL_LIMIT), routes_jobs.requeue_job,
           "Requeued {changed}.", back="/hangfire/jobs?state=Failed"),
    # Recurring jobs.
    Action("/recurring/{recurring_id}/trigger", RECURRING, routes_recurring.trigger,
           "Recurring job {recurring_id!r} triggered: job {answer[job_id]}.",
           back="/hangfire/recurring"),
    Action("/recurring/{recurring_id}/pause", RECURRING, routes_recurring.pause,
           "Recurring job {recurring_id!r} paused.", back="/hangfire/recurring"),
    Action("/recurring/{recurring_id}/resume", RECURRING, routes_recurring.resume,
           "Recurring job {recurring_id!r} resumed.", back="/hangfire/recurring"),
    Action("/recurring/{recurring_id}/delete", RECURRING, routes_recurring.delete_recurring,
           "Recurring job {recurring_id!r} deleted (runs already created stay).",
           back="/hangfire/recurring"),
    # Dead letters.
    Action("/dead-letters/{letter_id}/replay", LETTER, routes_dead_letters.replay_dead_letter,
           "Dead letter {letter_id} replayed: job {answer[job_id]} {answer[action]}.",
           back="/hangfire/dead-letters"),
    Action("/dead-letters/{letter_id}/discard", LETTER, routes_dead_letters.discard_dead_letter,
           "Dead letter {letter_id} discarded.", back="/hangfire/dead-letters"),
)  # fmt: skip


# -- the handler --------------------------------------------------------------------------------


async def act(request: Request, action: Action, values: dict[str, Any]) -> Response:
    """Check the form, run ``action``, and redirect back with its message (or why not)."""
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
    to = safe_next(form.get("next"), action.back.format(**values))
    try:
        message = await action.applies_to.run(action, request, values, form)
    except EXPECTED as exc:
        return done(request, to, str(exc), ok=False)
    return done(request, to, message)


def _route(action: Action) -> Callable[..., Awaitable[Response]]:
    """The route function of ``action``: its signature names the path's id with its type, so
    FastAPI checks it as the API's route does, before the form is read."""

    async def route(request: Request, **values: Any) -> Response:
        return await act(request, action, values)

    parameters = [inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)]
    if isinstance(action.applies_to, PathId):
        name, annotation = action.applies_to.name, action.applies_to.annotation
        parameters.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
        )
    route.__signature__ = inspect.Signature(parameters, return_annotation=Response)  # type: ignore[attr-defined]
    return route


for _action in ACTIONS:
    router.add_api_route(_action.path, _route(_action), methods=["POST"])
