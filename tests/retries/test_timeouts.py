"""Timeouts: an ordinary failure (JobTimeoutError) under the retry policy; async jobs are
cancelled at the deadline, a sync job's token fires, and a sync job that runs on keeps its slot,
is flagged as overrunning, and is recorded only when it returns."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from orchestrator.job_view import public_job
from tests.retries.conftest import enqueue, new_job, read, wait_for

TIMEOUT = "orchestrator.errors.JobTimeoutError"


async def test_an_async_job_is_cancelled_at_its_deadline(start_worker, postgres_url):
    settings = await start_worker(postgres_url)
    [job_id] = await enqueue(settings, [new_job("timeout.async_sleep", 30)])
    row, history = await wait_for(settings, job_id, {"Failed", "Succeeded"}, timeout=10)
    assert (row.state, row.error_type) == ("Failed", TIMEOUT)
    assert row.error_message == "the job ran past its timeout of 0.5 s"
    assert history[-1].at - history[-2].at < timedelta(seconds=3)


async def test_a_sync_job_sees_its_token_and_is_retried(start_worker, postgres_url):
    settings = await start_worker(postgres_url)
    [job_id] = await enqueue(settings, [new_job("timeout.sync_polite", 30)])
    row, history = await wait_for(settings, job_id, {"Scheduled", "Failed"}, timeout=10)
    assert history[-1].reason == "Retry attempt 1 of 1: the job ran past its timeout of 0.5 s"
    assert row.error_type == TIMEOUT
    row, _ = await wait_for(settings, job_id, {"Succeeded"}, timeout=10)
    assert (row.result, row.attempt) == ("second attempt", 2)


async def test_a_per_enqueue_timeout_wins(start_worker, postgres_url):
    settings = await start_worker(postgres_url)
    [job_id] = await enqueue(settings, [new_job("timeout.async_sleep", 0.8, timeout_seconds=5)])
    row, _ = await wait_for(settings, job_id, {"Failed", "Succeeded"}, timeout=10)
    assert (row.state, row.result) == ("Succeeded", "finished")


async def test_an_overrunning_sync_job_keeps_its_slot_and_is_flagged(start_worker, postgres_url):
    settings = await start_worker(postgres_url, timeout_grace_seconds=0.5, worker_concurrency=1)
    [job_id, next_id] = await enqueue(
        settings, [new_job("timeout.sync_stubborn", 2.5), new_job("retry.ok", 1)]
    )
    # Past deadline (0.5 s) plus grace (0.5 s) it is still Processing, flagged as overrunning.
    for _ in range(100):
        row, history = await read(settings, job_id)
        if (history[-1].data or {}).get("overrunning_since"):
            break
        await asyncio.sleep(0.05)
    assert row.state == "Processing"
    assert history[-1].state == "Processing"
    flagged = history[-1].data["overrunning_since"]
    assert public_job(row, history)["overrunning_since"] == flagged  # GET /api/v1/jobs/{id}
    row, history = await wait_for(settings, job_id, {"Failed"}, timeout=10)
    # Recorded only once its code returned (about 2.5 s after it started), as a timeout.
    started = history[-2].at
    assert history[-1].at - started >= timedelta(seconds=2.4)
    assert row.error_type == TIMEOUT
    assert flagged >= (started + timedelta(seconds=1)).isoformat()
    # Its slot stayed taken: the next job started only after it returned.
    _, next_history = await wait_for(settings, next_id, {"Succeeded"})
    assert next_history[1].at >= history[-1].at
