"""Each failed attempt keeps its own exception in the history row its failure wrote (Scheduled
for a retry, Failed, a timeout too); a Succeeded job shows its result and no error; tracebacks
start at the job's own frame (issue 14, point 7). A real worker, RabbitMQ and store; the API's
job read and the dashboard's job page in-process on the same store."""

from __future__ import annotations

import html
import re
import uuid
from pathlib import Path
from typing import Any

from tests.api.conftest import DOWN_AMQP_URL
from tests.retries import jobs
from tests.retries.conftest import enqueue, new_job, wait_for

JOBS_FILE = str(Path(jobs.__file__))
FOLDED = re.compile(r"^  … \d+ framework frames? folded$", re.MULTILINE)
ATTEMPT_ERROR = 'data-testid="attempt-error"'


def frames(traceback_text: str) -> list[str]:
    """The ``File "…", line n, in f`` lines of a traceback, in order."""
    return [line.strip() for line in traceback_text.splitlines() if line.startswith('  File "')]


def assert_user_first(traceback_text: str, function: str) -> None:
    """The first frame shown is the job's own, after one line counting the folded ones."""
    first = frames(traceback_text)[0]
    assert first.startswith(f'File "{JOBS_FILE}"') and first.endswith(f"in {function}"), (
        traceback_text
    )
    before_first = traceback_text.split('  File "', 1)[0]
    assert FOLDED.search(before_first), traceback_text


async def read_job(start_api: Any, database_url: str, job_id: uuid.UUID) -> tuple[dict, str]:
    """The API's job read and the dashboard's job page (HTML, unescaped) for ``job_id``."""
    async with start_api(database_url, amqp_url=DOWN_AMQP_URL) as api:
        read = await api.http.get(f"/api/v1/jobs/{job_id}")
        assert read.status_code == 200, read.text
        page = await api.http.get(f"/hangfire/jobs/{job_id}")
        assert page.status_code == 200, page.text
    return read.json(), page.text


async def test_a_job_failing_twice_then_succeeding_keeps_each_attempts_exception(
    start_worker, start_api, database_url
):
    settings = await start_worker(database_url)
    [job_id] = await enqueue(settings, [new_job("attempts.twice_then_ok")])
    row, history = await wait_for(settings, job_id, {"Succeeded"})
    # The job's error columns were the last failed attempt's; success clears them.
    assert (row.error_type, row.error_message, row.error_traceback) == (None, None, None)
    failed = [h for h in history if h.data and "error" in h.data]
    assert [(h.state, h.data["attempt"]) for h in failed] == [("Scheduled", 1), ("Scheduled", 2)]
    for attempt, h in enumerate(failed, start=1):
        error = h.data["error"]
        assert error["type"] == "builtins.RuntimeError"
        assert error["message"] == f"attempt {attempt} failed"
        assert error["traceback"].endswith(f"RuntimeError: attempt {attempt} failed\n")
        assert_user_first(error["traceback"], "fails_twice")

    job, page = await read_job(start_api, database_url, job_id)
    assert job["state"] == "Succeeded" and job["error"] is None
    assert job["result"] == "succeeded on attempt 3"
    shown = [(h["state"], h["error"]) for h in job["history"]]
    assert [state for state, _ in shown] == [
        "Enqueued", "Processing", "Scheduled", "Processing", "Scheduled", "Processing", "Succeeded"
    ]  # fmt: skip
    assert [e["message"] for _, e in shown if e] == ["attempt 1 failed", "attempt 2 failed"]
    assert all(e is None for state, e in shown if state != "Scheduled")
    assert all("error" not in (h["data"] or {}) for h in job["history"])  # shown on its own
    assert job["history"][2]["data"]["retry"] == 1

    # The page shows the result, each attempt's exception folded, and no red Exception block.
    assert page.count(ATTEMPT_ERROR) == 2
    assert "<h2>Exception</h2>" not in page and 'class="problem"' not in page
    assert "<h2>Result</h2>" in page
    text = html.unescape(page)
    assert "attempt 1 failed" in text and "attempt 2 failed" in text
    assert f'File "{JOBS_FILE}"' in text and "framework frames folded" in text


async def test_a_failed_job_shows_its_last_exception_and_every_attempts_own(
    start_worker, start_api, postgres_url
):
    settings = await start_worker(postgres_url)
    [job_id] = await enqueue(settings, [new_job("retry.always", "kaput")])
    row, history = await wait_for(settings, job_id, {"Failed"})
    failed = [h for h in history if h.data and "error" in h.data]
    assert [h.state for h in failed] == ["Scheduled", "Scheduled", "Failed"]
    assert [h.data["attempt"] for h in failed] == [1, 2, 3]
    assert failed[-1].data["error"]["traceback"] == row.error_traceback

    job, page = await read_job(start_api, postgres_url, job_id)
    assert job["error"]["message"] == "kaput"
    assert_user_first(job["error"]["traceback"], "always")
    assert [h["error"]["message"] for h in job["history"] if h["error"]] == ["kaput"] * 3
    assert "<h2>Exception</h2>" in page and page.count(ATTEMPT_ERROR) == 3


async def test_async_and_process_mode_tracebacks_start_at_the_jobs_frame(
    start_worker, postgres_url
):
    settings = await start_worker(postgres_url)
    ids = await enqueue(
        settings,
        [new_job("attempts.async_raises", "no such thing"), new_job("process.raises", "gone")],
    )
    for job_id, function in zip(ids, ["async_raises", "process_raises"], strict=True):
        row, history = await wait_for(settings, job_id, {"Failed"}, timeout=60)
        assert_user_first(row.error_traceback, function)
        assert history[-1].data["error"]["traceback"] == row.error_traceback


async def test_a_timed_out_attempt_keeps_its_timeout_in_its_history_row(
    start_worker, start_api, postgres_url
):
    settings = await start_worker(postgres_url)
    [job_id] = await enqueue(settings, [new_job("timeout.sync_polite", 30)])
    _, history = await wait_for(settings, job_id, {"Succeeded"})
    [timed_out] = [h for h in history if h.data and "error" in h.data]
    assert timed_out.state == "Scheduled"
    error = timed_out.data["error"]
    assert error["type"] == "orchestrator.errors.JobTimeoutError"
    assert error["message"] == "the job ran past its timeout of 0.5 s"
    # Raised by the worker itself: no frame of the job's; the frame that raised it is kept.
    assert FOLDED.search(error["traceback"]) and len(frames(error["traceback"])) == 1
    job, _ = await read_job(start_api, postgres_url, job_id)
    assert (job["result"], job["error"]) == ("second attempt", None)
