"""When a recurring job runs next: cron expressions evaluated in an IANA time zone.

Parsing and matching are cronsim's (five fields, or six with seconds FIRST; the Debian cron
day-of-month/day-of-week rule). This module adds the macros, the time zone and the rules across
daylight-saving changes, which it applies itself rather than trusting a library's defaults:

- An expression with a fixed minute and hour (neither field starts with ``*``) names a wall-clock
  time. It is matched in local time: inside a spring-forward gap it runs at the first instant
  after the gap; inside a fall-back overlap it runs once, at the first of the two instants.
- An expression whose minute or hour field is ``*`` or a ``*/n`` step runs at every real instant
  that matches, so ``0 * * * *`` runs every real hour across both changes.

Everything here is pure: callers pass the instant to count from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: Each field's name and how many values it has (a step larger than that is refused).
_FIELDS = (("minute", 60), ("hour", 24), ("day-of-month", 31), ("month", 12), ("day-of-week", 7))
_SECONDS_FIELD = ("second", 60)
_STEP = re.compile(r"/(\d+)")
#: Naive candidates to look at before giving up (a fold or a gap skips one or two).
_MAX_CANDIDATES = 1000


class ScheduleError(ValueError):
    """An expression or time zone that cannot be evaluated; the message says which and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Schedule:
    """A parsed cron expression in a time zone; :meth:`next_after` gives its occurrences."""

    expression: str  #: as given (a macro stays a macro)
    fields: str  #: the five or six fields it stands for
    zone: ZoneInfo

    @property
    def wall_clock(self) -> bool:
        """A fixed local time (Debian cron's rule): minute and hour fields not ``*``-based."""
        parts = self.fields.split()
        minute, hour = (parts[0], parts[1]) if len(parts) == 5 else (parts[1], parts[2])
        return not minute.startswith("*") and not hour.startswith("*")

    def next_after(self, after: datetime) -> datetime:
        """The first occurrence strictly after ``after`` (timezone-aware), in UTC."""
        if after.utcoffset() is None:
            raise ValueError("after must be timezone-aware")
        after = after.astimezone(UTC)  # same-zone comparisons would ignore the fold
        candidates = self._wall_clock_after(after) if self.wall_clock else self._real_after(after)
        for _, candidate in zip(range(_MAX_CANDIDATES), candidates, strict=False):
            if candidate.astimezone(UTC) > after:
                return candidate.astimezone(UTC)
        raise ScheduleError("cron", f"{self.expression!r} has no occurrence after {after}")

    def occurrences(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """Up to ``limit`` occurrences in ``(after, until]``, oldest first."""
        found: list[datetime] = []
        while len(found) < limit:
            after = self.next_after(after)
            if after > until:
                break
            found.append(after)
        return found

    def _real_after(self, after: datetime) -> Iterator[datetime]:
        yield from _iterate(self.fields, after.astimezone(self.zone))

    def _wall_clock_after(self, after: datetime) -> Iterator[datetime]:
        local = after.astimezone(self.zone).replace(tzinfo=None)
        for naive in _iterate(self.fields, local):
            yield _resolve(naive, self.zone)


def _iterate(fields: str, start: datetime) -> Iterator[datetime]:
    try:
        yield from CronSim(fields, start)
    except StopIteration:  # cronsim gives up after 50 years without a match
        return


def _resolve(naive: datetime, zone: ZoneInfo) -> datetime:
    """A local wall-clock time as an instant: the first of two in an overlap, the end of a gap."""
    aware = naive.replace(tzinfo=zone, fold=0)
    if not _imaginary(aware):
        return aware
    step = naive
    while _imaginary(step.replace(tzinfo=zone)):
        step += timedelta(minutes=1)
    # Transitions fall on whole minutes, so the first valid minute is where the gap ends.
    return step.replace(second=0, tzinfo=zone)


def _imaginary(aware: datetime) -> bool:
    return aware != aware.astimezone(UTC).astimezone(aware.tzinfo)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or :class:`ScheduleError` naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(
            "timezone",
            f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin' or 'UTC')",
        ) from None


def parse(expression: str, timezone: str = "UTC") -> Schedule:
    """Check ``expression`` and ``timezone``; raise :class:`ScheduleError` naming the problem."""
    text = " ".join(expression.split())
    fields = MACROS.get(text.lower(), text)
    if text.startswith("@") and text.lower() not in MACROS:
        names = ", ".join(MACROS)
        raise ScheduleError("cron", f"unknown cron macro {text!r}; known: {names}")
    if len(fields.split()) not in (5, 6):
        raise ScheduleError(
            "cron",
            f"invalid cron expression {expression!r}: expected 5 fields (minute hour day month "
            "weekday) or 6 with seconds first",
        )
    _check_steps(expression, fields.split())
    tz = zone(timezone)
    try:
        CronSim(fields, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ScheduleError("cron", f"invalid cron expression {expression!r}: {exc}") from None
    return Schedule(expression=text, fields=fields, zone=tz)


def _check_steps(expression: str, parts: list[str]) -> None:
    """cronsim takes any step (``*/99999999999999999999``); a step is at most the number of
    values of its field, so every accepted expression means what it says."""
    names = (_SECONDS_FIELD, *_FIELDS) if len(parts) == 6 else _FIELDS
    for part, (name, span) in zip(parts, names, strict=True):
        for step in _STEP.findall(part):
            if len(step) > 3 or int(step) > span:
                raise ScheduleError(
                    "cron",
                    f"invalid cron expression {expression!r}: a step in the {name} field must be "
                    f"at most {span}",
                )


def next_occurrence(expression: str, timezone: str, after: datetime) -> datetime:
    """The first occurrence of ``expression`` in ``timezone`` strictly after ``after`` (UTC)."""
    return parse(expression, timezone).next_after(after)
