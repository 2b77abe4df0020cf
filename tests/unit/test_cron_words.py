"""Cron expressions in words, as the dashboard's recurring page shows them
(orchestrator_api.dashboard.cron_text)."""

from __future__ import annotations

import pytest

from orchestrator_api.dashboard.cron_text import describe


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("* * * * *", "Every minute"),
        ("0 9 * * MON", "At 09:00, only on Monday"),
        ("30 0 9 * * 1-5", "At 09:00:30, Monday through Friday"),  # seconds first
        ("0 0 1,15 * 3", "At 00:00, on day 1 and 15 of the month, or on Wednesday"),
        # Debian cron's rule: either the days of month or the weekdays, whatever their form ...
        ("15 4 1,15 * MON-FRI", "At 04:15, on day 1 and 15 of the month, or Monday through Friday"),
        ("0 0 1 * 5L", "At 00:00, on day 1 of the month, or on the last Friday of the month"),
        # ... but both when either starts with a star.
        ("0 0 */2 * 1", "At 00:00, every 2 days, only on Monday"),
        ("0 0 L * *", "At 00:00, on the last day of the month"),
        ("@hourly", "Every hour"),
    ],
)
def test_cron_words(cron: str, words: str) -> None:
    assert describe(cron, "Europe/Berlin") == f"{words} (Europe/Berlin)"


def test_cron_that_cannot_be_read_has_no_words() -> None:
    assert describe("0 0 * * 9", "UTC") is None
    assert describe("not cron", "UTC") is None
