"""Recurring-job methods of :class:`~orchestrator.Client` and :class:`~orchestrator.AsyncClient`.

The request shape is built once here (:func:`recurring_body`, :func:`recurring_path`); the two
mixins only send it. As with enqueue, the job's arguments are bound in a ``JobCall`` first and the
recurring options are keywords, so they never collide with a job's parameter names::

    client.add_or_update("nightly-report", report.call(team="ops"), Cron.daily(3),
                         timezone="Europe/Berlin", misfire="strict", overlap="skip")
    job_id = client.trigger("nightly-report")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypedDict, Unpack
from urllib.parse import quote

from orchestrator import bounds
from orchestrator.client_requests import require_call
from orchestrator.jobs import JobCall
from orchestrator.results import Recurring

Misfire = Literal["relaxed", "strict", "ignore"]
Overlap = Literal["allow", "skip"]
#: A recurring job's definition, as the API answers it (``orchestrator.results.Recurring``).
Definition = Recurring


class RecurringOptions(TypedDict, total=False):
    """Keywords of ``add_or_update`` besides the time zone (never the job's arguments)."""

    queue: str | None  #: default: the job's own queue
    misfire: Misfire  #: missed while no scheduler ran: "relaxed" (one run), "strict", "ignore"
    overlap: Overlap  #: "skip": no new run while the previous one has not ended
    retries: int | None  #: default: the job's own
    timeout_seconds: float | None


_OPTIONS = frozenset(RecurringOptions.__annotations__)


def recurring_path(recurring_id: str, action: str = "") -> str:
    if not recurring_id:
        raise ValueError("recurring_id must not be empty")
    return f"/recurring/{quote(recurring_id, safe='')}{action}"


def recurring_body(
    call: JobCall, cron: str, timezone: str, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body of ``PUT /api/v1/recurring/{id}``."""
    call = require_call(call, "add_or_update")
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise TypeError(
            f"add_or_update() got unknown option(s) {unknown}; job arguments go in .call()"
        )
    bounds.check_arguments(call.args, call.kwargs, max_depth=None, max_bytes=None)
    if isinstance(options.get("retries"), bool):
        raise TypeError("retries takes an integer, not a boolean")
    body: dict[str, Any] = {
        "job": call.name,
        "args": list(call.args),
        "kwargs": dict(call.kwargs),
        "cron": cron,
        "timezone": timezone,
    }
    body.update({key: value for key, value in options.items() if value is not None})
    return body


class RecurringMethods:
    """Mixed into :class:`~orchestrator.Client`."""

    #: Sends one request and returns the decoded answer; :class:`~orchestrator.Client` has it.
    _call: Callable[..., Any]

    def add_or_update(
        self,
        recurring_id: str,
        call: JobCall,
        cron: str,
        /,
        *,
        timezone: str = "UTC",
        **options: Unpack[RecurringOptions],
    ) -> Definition:
        """Create or replace the recurring job ``recurring_id``; returns its definition."""
        body = recurring_body(call, cron, timezone, options)
        return Recurring.of(self._call("PUT", recurring_path(recurring_id), json=body))

    def trigger(self, recurring_id: str) -> str:
        """Run it once now; its schedule does not move. Returns the new job's id."""
        return str(self._call("POST", recurring_path(recurring_id, "/trigger"))["job_id"])

    def remove(self, recurring_id: str) -> None:
        self._call("DELETE", recurring_path(recurring_id))

    def pause(self, recurring_id: str) -> Definition:
        return Recurring.of(self._call("POST", recurring_path(recurring_id, "/pause")))

    def resume(self, recurring_id: str) -> Definition:
        """Runs again from the next occurrence; nothing missed while paused is made up."""
        return Recurring.of(self._call("POST", recurring_path(recurring_id, "/resume")))

    def get_recurring(self, recurring_id: str) -> Definition:
        return Recurring.of(self._call("GET", recurring_path(recurring_id)))

    def list_recurring(self) -> list[Definition]:
        return [Recurring.of(item) for item in self._call("GET", "/recurring")["items"]]


class AsyncRecurringMethods:
    """Mixed into :class:`~orchestrator.AsyncClient`: the same methods, awaitable."""

    #: The awaitable twin of ``RecurringMethods._call``; :class:`~orchestrator.AsyncClient` has it.
    _call: Callable[..., Awaitable[Any]]

    async def add_or_update(
        self,
        recurring_id: str,
        call: JobCall,
        cron: str,
        /,
        *,
        timezone: str = "UTC",
        **options: Unpack[RecurringOptions],
    ) -> Definition:
        body = recurring_body(call, cron, timezone, options)
        return Recurring.of(await self._call("PUT", recurring_path(recurring_id), json=body))

    async def trigger(self, recurring_id: str) -> str:
        return str((await self._call("POST", recurring_path(recurring_id, "/trigger")))["job_id"])

    async def remove(self, recurring_id: str) -> None:
        await self._call("DELETE", recurring_path(recurring_id))

    async def pause(self, recurring_id: str) -> Definition:
        return Recurring.of(await self._call("POST", recurring_path(recurring_id, "/pause")))

    async def resume(self, recurring_id: str) -> Definition:
        return Recurring.of(await self._call("POST", recurring_path(recurring_id, "/resume")))

    async def get_recurring(self, recurring_id: str) -> Definition:
        return Recurring.of(await self._call("GET", recurring_path(recurring_id)))

    async def list_recurring(self) -> list[Definition]:
        return [Recurring.of(item) for item in (await self._call("GET", "/recurring"))["items"]]
