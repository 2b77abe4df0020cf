"""A worker with no jobs says why: no modules named, or modules that define none."""

from __future__ import annotations

from orchestrator_worker.main import no_jobs_message


def test_no_modules_named_asks_for_the_setting() -> None:
    assert "set ORCHESTRATOR_JOBS" in no_jobs_message([])


def test_modules_without_jobs_are_named_not_asked_for() -> None:
    message = no_jobs_message(["myapp.jobs", "myapp.more"])
    assert "set ORCHESTRATOR_JOBS" not in message
    assert "myapp.jobs, myapp.more" in message
    assert "define no @job" in message
