"""Overview: counts per state, the realtime graph (an htmx fragment polled every 2 s) and the
history graphs from the persistent per-hour counters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import job_search
from orchestrator.db import db_now
from orchestrator.lifecycle import State
from orchestrator.store import counters
from orchestrator.store import search as store_search
from orchestrator_api.dashboard.graphs import Series, line_chart
from orchestrator_api.dashboard.web import PREFIX, render, state_counts
from orchestrator_api.runtime import runtime_of

router = APIRouter(prefix=PREFIX)

#: Seconds the realtime graph shows.
WINDOW: Final = 60
#: A second this old is final: every transaction that wrote into it has committed (outcomes are
#: stamped with the database time of their transaction, which commits within moments).
SETTLE: Final = 5
_PLOTTED = (("Succeeded", "succeeded"), ("Failed", "failed"))


class OutcomeRates:
    """Succeeded/Failed per second over the last minute, counted from the history rows that
    entered those states. Each API process keeps the seconds that are final, so a poll reads
    only the last few seconds from the store (partial index ``ix_job_history_outcome_at``)."""

    def __init__(self) -> None:
        self._final: dict[int, dict[str, int]] = {}
        self._final_until = 0  #: every second before this one is in ``_final``

    async def series(self, conn: AsyncConnection) -> tuple[int, dict[str, list[int]]]:
        """(first second, per state the counts of the last WINDOW seconds, the current one
        (so far) included)."""
        end = int((await db_now(conn)).timestamp()) + 1
        start = end - WINDOW
        since = max(start, self._final_until)
        counts = await store_search.outcomes_per_second(conn, datetime.fromtimestamp(since, UTC))
        settled = end - SETTLE
        for second in range(since, settled):
            self._final[second] = {s: counts.get((second, s), 0) for s in job_search.OUTCOMES}
        self._final_until = max(self._final_until, settled)
        for second in [s for s in self._final if s < start]:
            del self._final[second]
        values: dict[str, list[int]] = {s: [] for s in job_search.OUTCOMES}
        for second in range(start, end):
            known = self._final.get(second)
            for state in job_search.OUTCOMES:
                values[state].append(
                    known[state] if known is not None else counts.get((second, state), 0)
                )
        return start, values


def _rates(request: Request) -> OutcomeRates:
    state = request.app.state
    if not hasattr(state, "dashboard_rates"):
        state.dashboard_rates = OutcomeRates()
    rates = state.dashboard_rates
    assert isinstance(rates, OutcomeRates)
    return rates


def _realtime_chart(start: int, values: Mapping[str, list[int]]) -> Markup:
    labels = [f"-{WINDOW - 1 - i}s" for i in range(WINDOW - 1)] + ["now"]
    series = [Series(name, css, values[name]) for name, css in _PLOTTED]
    return line_chart("Jobs per second, last minute", labels, series, tick_every=10, width=1100)


def _history_charts(
    counted: Mapping[tuple[datetime, str], int], now: datetime
) -> tuple[Markup, Markup]:
    first_hour = job_search.hours_back(now, 24)
    hours = [first_hour + timedelta(hours=i) for i in range(24)]
    day = [
        Series(name, css, [counted.get((hour, name), 0) for hour in hours])
        for name, css in _PLOTTED
    ]
    today = now.astimezone(UTC).date()
    days = [today - timedelta(days=6 - i) for i in range(7)]
    per_day: dict[tuple[object, str], int] = {}
    for (hour, state), count in counted.items():
        key = (hour.astimezone(UTC).date(), state)
        per_day[key] = per_day.get(key, 0) + count
    week = [Series(name, css, [per_day.get((d, name), 0) for d in days]) for name, css in _PLOTTED]
    return (
        line_chart(
            "Jobs per hour, last 24 hours (UTC)",
            [h.strftime("%H:00") for h in hours],
            day,
            tick_every=4,
        ),
        line_chart("Jobs per day, last 7 days (UTC)", [d.strftime("%a %d") for d in days], week, 1),
    )


@router.get("", response_class=HTMLResponse)
async def overview(request: Request) -> HTMLResponse:
    runtime = runtime_of(request)
    async with runtime.engine.connect() as conn:
        now = await db_now(conn)
        counts = await state_counts(request, conn)
        retries = await store_search.bounded_count(conn, job_search.Search(retries_only=True))
        counted = await counters.per_hour(conn, job_search.hours_back(now, 24 * 7))
        start, values = await _rates(request).series(conn)
    day, week = _history_charts(counted, now)
    return render(
        request,
        "overview.html",
        title="Overview",
        counts=[(state.value, counts[state.value]) for state in State],
        retries=retries,
        realtime=_realtime_chart(start, values),
        day_chart=day,
        week_chart=week,
        broker_connected=runtime.broker.connected,
    )


@router.get("/realtime", response_class=HTMLResponse)
async def realtime(request: Request) -> HTMLResponse:
    """The realtime graph alone, for htmx to swap in every 2 s."""
    async with runtime_of(request).engine.connect() as conn:
        start, values = await _rates(request).series(conn)
    return render(request, "_realtime.html", realtime=_realtime_chart(start, values))
