"""Cron expressions in words for the Recurring page: ``At 09:00, only on Monday (Europe/Berlin)``.

The words come from cron-descriptor (MIT), the Python port of the library Hangfire's own
dashboard uses, so they read as Hangfire users know them. It reads what ``orchestrator.schedule``
accepts: five fields, six with seconds first (a sixth field is a year only when it is four
digits, which cronsim refuses anyway), ``L``, ``W`` and ``#``, names of days and months, day of
week counted from Sunday = 0. A restricted day of month with a restricted day of week means
either one (Debian cron's rule, as cronsim runs it): the sentence says "or" for every form of
weekday (see :func:`_sentence`). The macros (``@daily``)
are expanded first with ``schedule.MACROS``. The times are wall-clock times of the recurring job's
own time zone, which the text names.

Imported on first use (about 0.1 s, which the API's start need not pay) and cached per
expression (a description costs about half a millisecond).
"""

from __future__ import annotations

from functools import lru_cache

from orchestrator.schedule import MACROS


@lru_cache(maxsize=2048)
def words(expression: str) -> str | None:
    """The expression in words, in its own wall-clock time; None when it cannot be read."""
    text = " ".join(expression.split())
    fields = MACROS.get(text.lower(), text).split()
    if len(fields) not in (5, 6):
        return None
    try:
        return _sentence(fields)
    except Exception:  # any error of the library's: the page still shows the expression
        return None


def _sentence(fields: list[str]) -> str:
    """The library's words, with the days put as cron means them. cronsim (Debian cron) runs on
    the days that match the day of month OR the day of week when both are restricted (neither
    starts with ``*``), else on those that match both; the library says "or" only for a plain
    list of weekdays ("on day 1, or on Monday") and not for a range ("on day 1, Monday through
    Friday"), so the sentence is put together here from its parts: time, days, months."""
    day, month, weekday = len(fields) - 3, len(fields) - 2, len(fields) - 1

    def only(**kept: int) -> str:
        parts = [*fields]
        for index in (day, month, weekday):
            if index not in kept.values():
                parts[index] = "*"
        return _describe(" ".join(parts))

    time = only()
    days, weekdays, months = only(d=day), only(w=weekday), only(m=month)
    if not all(part.startswith(time) for part in (days, weekdays, months)):
        return _describe(" ".join(fields))  # not the shape expected: the library's own words
    days, weekdays, months = (p.removeprefix(time) for p in (days, weekdays, months))
    if not fields[day].startswith(("*", "?")) and not fields[weekday].startswith(("*", "?")):
        either = weekdays.removeprefix(", ").removeprefix("only ").removeprefix("or ")
        weekdays = f", or {either}"
    return time + days + weekdays + months


def _describe(fields: str) -> str:
    from cron_descriptor import ExpressionDescriptor, Options  # type: ignore[import-untyped]

    options = Options()
    options.use_24hour_time_format = True
    options.day_of_week_start_index_zero = True
    options.verbose = False
    options.throw_exception_on_parse_error = True
    described = str(ExpressionDescriptor(fields, options).get_description())
    if not described:
        raise ValueError(f"no words for {fields!r}")
    return described


def describe(expression: str, timezone: str) -> str | None:
    """``At 09:00, only on Monday (Europe/Berlin)``: the words and the zone they are read in."""
    described = words(expression)
    return None if described is None else f"{described} ({timezone})"
