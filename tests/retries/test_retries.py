"""Automatic retries on a real worker, RabbitMQ and store: Scheduled(retry) with the exact
reason, back through the broker's delay levels, claimed when due, Failed when exhausted."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.broker import JobMessage
from orchestrator.db import create_engine, db_now
from orchestrator.lifecycle import State
from tests.retries.conftest import enqueue, new_job, publish, read, wait_for


async def test_failure_is_retried_through_the_delay_levels_and_succeeds(start_worker, database_url):
    settings = await start_worker(database_url)
    [job_id] = await enqueue(settings, [new_job("retry.flaky")])
    row, history = await wait_for(settings, job_id, {"Scheduled"})
    assert row.scheduled_reason == "retry"
    assert row.retries_used == 1
    assert history[-1].reason == "Retry attempt 1 of 2: flaky failure on attempt 1"
    assert row.due_at - history[-1].at == timedelta(seconds=1)
    row, history = await wait_for(settings, job_id, {"Succeeded"})
    assert (row.result, row.attempt, row.retries_used) == (2, 2, 1)
    assert [h.state for h in history] == [
        "Enqueued",
        "Processing",
        "Scheduled",
        "Processing",
        "Succeeded",
    ]
    # The second run started after the due time (database clock), without the scheduler.
    assert history[3].at >= history[2].at + timedelta(seconds=1)


async def test_exhausted_retries_end_failed_with_each_attempt_in_history(
    start_worker, postgres_url
):
    settings = await start_worker(postgres_url)
    parent = new_job("retry.always", "kaput")
    child = new_job(
        "retry.ok", 5, state=State.AWAITING, parent_id=parent.id, continue_on="finished"
    )
    [job_id, child_id] = await enqueue(settings, [parent, child])
    await wait_for(settings, job_id, {"Scheduled"})
    assert (await read(settings, child_id))[0].state == "Awaiting"  # a retry has not ended it
    row, history = await wait_for(settings, job_id, {"Failed"})
    assert (row.attempt, row.retries_used, row.error_message) == (3, 2, "kaput")
    assert [h.reason for h in history if h.state == "Scheduled"] == [
        "Retry attempt 1 of 2: kaput",
        "Retry attempt 2 of 2: kaput",
    ]
    assert history[-1].reason == "builtins.RuntimeError: kaput"
    # Failed with no retry left has ended: its continuation runs now.
    child_row, _ = await wait_for(settings, child_id, {"Succeeded"})
    assert child_row.result == 5


async def test_retry_on_and_no_retry_on_choose_which_failures_are_retried(
    start_worker, postgres_url
):
    settings = await start_worker(postgres_url)
    ids = await enqueue(
        settings,
        [
            new_job("retry.only_connection", "value"),
            new_job("retry.only_connection", "connection"),
            new_job("retry.not_on_key"),
        ],
    )
    not_listed, listed, excluded = ids
    row, _ = await wait_for(settings, not_listed, {"Failed", "Scheduled"})
    assert (row.state, row.retries_used) == ("Failed", 0)
    row, history = await wait_for(settings, listed, {"Failed", "Scheduled"})
    assert row.state == "Scheduled"
    assert history[-1].reason == "Retry attempt 1 of 3: connection"
    row, _ = await wait_for(settings, excluded, {"Failed", "Scheduled"})
    assert (row.state, row.error_type) == ("Failed", "builtins.KeyError")


async def test_per_enqueue_retry_delays_and_budget_win(start_worker, postgres_url):
    settings = await start_worker(postgres_url)
    job = new_job("retry.always", "once", retries=1, options={"retry_delays": [2]})
    [job_id] = await enqueue(settings, [job])
    row, history = await wait_for(settings, job_id, {"Scheduled"})
    assert history[-1].reason == "Retry attempt 1 of 1: once"
    assert row.due_at - history[-1].at == timedelta(seconds=2)
    row, _ = await wait_for(settings, job_id, {"Failed"})
    assert row.attempt == 2


async def test_an_early_retry_message_is_delayed_again_not_dropped(start_worker, postgres_url):
    settings = await start_worker(postgres_url)
    engine = create_engine(postgres_url)
    async with engine.connect() as conn:
        now = await db_now(conn)
    await engine.dispose()
    due = now + timedelta(seconds=3)
    job = new_job("retry.ok", 7, state=State.SCHEDULED, scheduled_reason="retry", due_at=due)
    [job_id] = await enqueue(settings, [job])  # a Scheduled job: no outbox entry of its own
    # A wake-up arriving 3 s early (a duplicate, or a lost-and-relayed message).
    await publish(settings, [JobMessage(job_id, "default")])
    row, history = await wait_for(settings, job_id, {"Succeeded"}, timeout=15)
    started = next(h.at for h in history if h.state == "Processing")
    assert started >= due
    assert (row.result, row.attempt) == (7, 1)
    row, _ = await read(settings, job_id)
    assert row.state == "Succeeded"
