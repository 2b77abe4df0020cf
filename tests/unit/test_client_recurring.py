"""The body and path of the client's recurring-job requests (orchestrator.client_recurring):
a job's own parameters never collide with the definition's options. The round trip through the
API is tests/recurring/test_client.py."""

from __future__ import annotations

import pytest

from orchestrator import JobCall
from orchestrator.client_recurring import recurring_body, recurring_path
from tests import jobs_for_tests as jobs


def test_job_parameters_named_like_options_do_not_collide() -> None:
    call = JobCall.named("reports.build", queue="q-arg", timezone="arg-tz", cron="arg")
    body = recurring_body(call, "@daily", "Asia/Tokyo", {"queue": "low", "retries": None})
    assert body == {
        "job": "reports.build",
        "args": [],
        "cron": "@daily",
        "timezone": "Asia/Tokyo",
        "kwargs": {"queue": "q-arg", "timezone": "arg-tz", "cron": "arg"},
        "queue": "low",
    }
    with pytest.raises(TypeError, match="unknown option"):
        recurring_body(call, "@daily", "UTC", {"delay": 5})
    with pytest.raises(TypeError, match="takes a JobCall"):
        recurring_body(jobs.add, "@daily", "UTC", {})  # type: ignore[arg-type]
    assert recurring_path("a/b c", "/pause") == "/recurring/a%2Fb%20c/pause"
