"""Cron expressions by name, like Hangfire's ``Cron`` class (``Cron.daily(9, 30)``)."""

from __future__ import annotations


def _check(name: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")
    return value


class Cron:
    """Five-field expressions (minute hour day-of-month month day-of-week)."""

    @staticmethod
    def minutely() -> str:
        return "* * * * *"

    @staticmethod
    def hourly(minute: int = 0) -> str:
        return f"{_check('minute', minute, 0, 59)} * * * *"

    @staticmethod
    def daily(hour: int = 0, minute: int = 0) -> str:
        return f"{_check('minute', minute, 0, 59)} {_check('hour', hour, 0, 23)} * * *"

    @staticmethod
    def weekly(day_of_week: int = 0, hour: int = 0, minute: int = 0) -> str:
        """``day_of_week`` counts from Sunday = 0."""
        return (
            f"{_check('minute', minute, 0, 59)} {_check('hour', hour, 0, 23)} * * "
            f"{_check('day_of_week', day_of_week, 0, 6)}"
        )

    @staticmethod
    def monthly(day: int = 1, hour: int = 0, minute: int = 0) -> str:
        return (
            f"{_check('minute', minute, 0, 59)} {_check('hour', hour, 0, 23)} "
            f"{_check('day', day, 1, 31)} * *"
        )

    @staticmethod
    def yearly(month: int = 1, day: int = 1, hour: int = 0, minute: int = 0) -> str:
        return (
            f"{_check('minute', minute, 0, 59)} {_check('hour', hour, 0, 23)} "
            f"{_check('day', day, 1, 31)} {_check('month', month, 1, 12)} *"
        )
