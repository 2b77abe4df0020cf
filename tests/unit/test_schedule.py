"""Cron evaluation in time zones (orchestrator.schedule): pure, no clock, no sleeping."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from orchestrator import Cron
from orchestrator.schedule import ScheduleError, next_occurrence, parse

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def run(expression: str, tz: str, start: datetime, count: int) -> list[str]:
    """The next ``count`` occurrences as local ISO times with their offsets."""
    schedule = parse(expression, tz)
    found = []
    for _ in range(count):
        start = schedule.next_after(start)
        assert start.tzinfo is UTC
        found.append(start.astimezone(ZoneInfo(tz)).isoformat())
    return found


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "start", "expected"),
    [
        # Berlin springs forward at 02:00 CET on 2024-03-31: 02:00 local does not exist.
        (
            BERLIN,
            utc(2024, 3, 30, 23),
            ["2024-03-31T01:00:00+01:00", "2024-03-31T03:00:00+02:00", "2024-03-31T04:00:00+02:00"],
        ),
        # and falls back at 03:00 CEST on 2024-10-27: 02:00 local happens twice.
        (
            BERLIN,
            utc(2024, 10, 26, 23),
            ["2024-10-27T02:00:00+02:00", "2024-10-27T02:00:00+01:00", "2024-10-27T03:00:00+01:00"],
        ),
        (
            NEW_YORK,
            utc(2024, 3, 10, 5),
            ["2024-03-10T01:00:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-10T04:00:00-04:00"],
        ),
        (
            NEW_YORK,
            utc(2024, 11, 3, 4),
            ["2024-11-03T01:00:00-04:00", "2024-11-03T01:00:00-05:00", "2024-11-03T02:00:00-05:00"],
        ),
    ],
)
def test_hourly_runs_every_real_hour_across_dst(
    tz: str, start: datetime, expected: list[str]
) -> None:
    found = run("0 * * * *", tz, start, 3)
    assert found == expected
    instants = [datetime.fromisoformat(t) for t in found]
    assert all(b - a == instants[1] - instants[0] for a, b in itertools.pairwise(instants))


@pytest.mark.parametrize(
    ("expression", "tz", "start", "expected"),
    [
        # A fixed time inside the spring-forward gap runs at the first instant after the gap.
        (
            "30 2 * * *",
            BERLIN,
            utc(2024, 3, 30, 12),
            ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"],
        ),
        (
            "0 30 2 * * *",
            BERLIN,
            utc(2024, 3, 30, 12),
            ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"],
        ),
        (
            "30 2 * * *",
            NEW_YORK,
            utc(2024, 3, 9, 12),
            ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"],
        ),
        # A fixed time inside the fall-back overlap runs once, at the first of the two.
        (
            "30 2 * * *",
            BERLIN,
            utc(2024, 10, 26, 12),
            ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"],
        ),
        (
            "30 1 * * *",
            NEW_YORK,
            utc(2024, 11, 2, 12),
            ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"],
        ),
        # Two wall-clock times inside one gap both land on its end: one run, not two.
        (
            "0,30 2 * * *",
            BERLIN,
            utc(2024, 3, 30, 12),
            ["2024-03-31T03:00:00+02:00", "2024-04-01T02:00:00+02:00"],
        ),
    ],
)
def test_fixed_time_in_gap_and_overlap(
    expression: str, tz: str, start: datetime, expected: list[str]
) -> None:
    assert run(expression, tz, start, 2) == expected


def test_counting_from_inside_the_second_pass_of_an_overlap_does_not_fire_again() -> None:
    # 01:15 EST is the second 01:15 of the day: the 01:30 occurrence already ran at 01:30 EDT.
    second_pass = datetime(2024, 11, 3, 1, 15, tzinfo=ZoneInfo(NEW_YORK), fold=1)
    nxt = next_occurrence("30 1 * * *", NEW_YORK, second_pass)
    assert nxt.astimezone(ZoneInfo(NEW_YORK)).isoformat() == "2024-11-04T01:30:00-05:00"


def test_six_fields_read_seconds_first() -> None:
    assert run("*/1 * * * * *", "UTC", utc(2024, 1, 1), 3) == [
        "2024-01-01T00:00:01+00:00",
        "2024-01-01T00:00:02+00:00",
        "2024-01-01T00:00:03+00:00",
    ]
    assert run("15 30 9 * * *", "UTC", utc(2024, 1, 1), 1) == ["2024-01-01T09:30:15+00:00"]


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", "2024-05-15T11:00:00+00:00"),
        ("@daily", "2024-05-16T00:00:00+00:00"),
        ("@midnight", "2024-05-16T00:00:00+00:00"),
        ("@weekly", "2024-05-19T00:00:00+00:00"),  # Sunday
        ("@monthly", "2024-06-01T00:00:00+00:00"),
        ("@yearly", "2025-01-01T00:00:00+00:00"),
        ("@annually", "2025-01-01T00:00:00+00:00"),
    ],
)
def test_macros(macro: str, expected: str) -> None:
    assert run(macro, "UTC", utc(2024, 5, 15, 10, 20), 1) == [expected]


def test_time_zone_shifts_the_instant() -> None:
    assert run("0 9 * * *", "Asia/Tokyo", utc(2023, 12, 31, 12), 1) == ["2024-01-01T09:00:00+09:00"]


@pytest.mark.parametrize(
    ("expression", "field", "words"),
    [
        ("* * * *", "cron", "expected 5 fields"),
        ("61 * * * *", "cron", "Bad minute"),
        ("* * 32 * *", "cron", "Bad day-of-month"),
        ("@fortnightly", "cron", "unknown cron macro"),
        ("", "cron", "expected 5 fields"),
    ],
)
def test_invalid_expressions_name_the_problem(expression: str, field: str, words: str) -> None:
    with pytest.raises(ScheduleError) as error:
        parse(expression)
    assert error.value.field == field
    assert words in str(error.value)


def test_unknown_time_zone() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus'") as error:
        parse("* * * * *", "Mars/Olympus")
    assert error.value.field == "timezone"


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_occurrence("* * * * *", "UTC", datetime(2024, 1, 1))


@pytest.mark.parametrize(
    "expression",
    [
        Cron.minutely(),
        Cron.hourly(5),
        Cron.daily(9, 30),
        Cron.weekly(1, 8),
        Cron.monthly(15),
        Cron.yearly(12, 25, 7),
    ],
)
def test_cron_helpers_parse(expression: str) -> None:
    start = utc(2024, 1, 1)
    assert parse(expression).next_after(start) > start


def test_occurrences_are_bounded() -> None:
    schedule = parse("* * * * *")
    found = schedule.occurrences(utc(2024, 1, 1), utc(2024, 1, 1, 5), limit=100)
    assert len(found) == 100
    assert found[0] == utc(2024, 1, 1, 0, 1) and found[-1] == utc(2024, 1, 1, 1, 40)
    assert schedule.occurrences(utc(2024, 1, 1), utc(2024, 1, 1, 0, 3), limit=100) == [
        utc(2024, 1, 1, 0, 1),
        utc(2024, 1, 1, 0, 2),
        utc(2024, 1, 1, 0, 3),
    ]
