"""The README's examples do what they say (the example jobs themselves, without services)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

from examples.jobs import daily_report
from orchestrator.testing import run_job

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_recurring_example_reads_the_day_when_it_runs_not_when_registered() -> None:
    registration = re.search(r"add_or_update\(\"morning-report\", (.*?),\n", README.read_text())
    assert registration is not None
    call = registration.group(1)
    assert "now(" not in call and "today(" not in call, call
    assert run_job(daily_report, ["ops@example.com"])["day"] == datetime.now(UTC).date().isoformat()


def test_a_past_day_can_be_reported_again() -> None:
    report = run_job(daily_report, ["a@example.com", "b@example.com"], day=date(2026, 1, 2))
    assert report == {"day": "2026-01-02", "sent_to": 2}
