"""Poison is isolated, never contagious: through a real worker, RabbitMQ and each store, an
outcome the store cannot hold fails that job alone with an error naming why, while the jobs that
finished with it are recorded once, Succeeded, and never run again; the worker keeps consuming."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from orchestrator import outcomes, store
from orchestrator.db import create_engine, db_now
from orchestrator.settings import Settings
from tests.poison import jobs
from tests.poison.conftest import enqueue, new_job, read, wait_all
from tests.retries.conftest import publish

GOOD = 6


async def _held_together(
    settings: Settings, poison: list[tuple[str, str]]
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Good and poison jobs that all run at once and finish together, so their outcomes reach
    the store writer together; returns (good ids, poison ids) once every one has ended."""
    good = [new_job("poison.held", "ok") for _ in range(GOOD)]
    bad = [new_job(name, kind) for name, kind in poison]
    mixed = [*good[: GOOD // 2], *bad, *good[GOOD // 2 :]]
    await enqueue(settings, mixed)
    ids = [j.id for j in mixed]
    await wait_all(settings, ids, {"Processing"})
    jobs.RELEASE.set()
    await wait_all(settings, ids, {"Succeeded", "Failed"})
    return [j.id for j in good], [j.id for j in bad]


async def _assert_recorded_once(settings: Settings, ids: list[uuid.UUID], result: Any) -> None:
    for job_id in ids:
        row, history = await read(settings, job_id)
        assert (row.state, row.result, row.attempt) == ("Succeeded", result, 1)
        assert [h.state for h in history] == ["Enqueued", "Processing", "Succeeded"]


async def _still_consuming(settings: Settings) -> None:
    [later] = await enqueue(settings, [new_job("poison.ok", 7)])
    await wait_all(settings, [later], {"Succeeded"})


RESULT_CASES = {
    "nan": "nan is not a JSON number",
    "infinity": "result[1]: inf is not a JSON number",
    "big_int": "an integer of more than 4300 digits",
    "surrogate": 'result["text"]: contains a lone surrogate',
    "nul": "result: contains a NUL character",
    "nul_key": "contains a NUL character",
    "large": "over the limit of 1048576 bytes (ORCHESTRATOR_MAX_RESULT_BYTES)",
    "deep": f"nested deeper than {outcomes.MAX_DEPTH} levels",
}


async def test_results_the_store_cannot_hold_fail_only_their_job(start_worker, database_url):
    running = await start_worker(database_url)
    settings = running.settings
    kinds = list(RESULT_CASES)
    good, bad = await _held_together(settings, [("poison.held", kind) for kind in kinds])
    await _assert_recorded_once(settings, good, {"fine": True})
    for kind, job_id in zip(kinds, bad, strict=True):
        row, history = await read(settings, job_id)
        assert (row.state, row.error_type, row.attempt) == ("Failed", "ResultNotStorable", 1), kind
        assert RESULT_CASES[kind] in row.error_message, (kind, row.error_message)
        assert row.result is None
        assert [h.state for h in history] == ["Enqueued", "Processing", "Failed"]
    await _still_consuming(settings)


async def test_hostile_exceptions_are_stored_sanitised_and_bounded(start_worker, database_url):
    running = await start_worker(database_url)
    settings = running.settings
    kinds = ["nul", "surrogate", "huge", "strange_type"]
    good, bad = await _held_together(settings, [("poison.held_raises", kind) for kind in kinds])
    await _assert_recorded_once(settings, good, {"fine": True})
    rows = {kind: (await read(settings, i))[0] for kind, i in zip(kinds, bad, strict=True)}
    assert all(row.state == "Failed" and row.attempt == 1 for row in rows.values())
    assert rows["nul"].error_message == "bad\ufffdmessage"
    assert rows["surrogate"].error_message == "bad\ufffdmessage"
    huge = rows["huge"].error_message
    assert len(huge) <= outcomes.ERROR_MESSAGE_MAX_CHARS + 20 and huge.endswith("(truncated)")
    assert rows["strange_type"].error_type.endswith("Strange\ufffdError\ufffd")
    for row in rows.values():
        assert "\x00" not in row.error_traceback
        assert len(row.error_traceback) <= settings.traceback_max_chars + 20
    await _still_consuming(settings)


async def test_a_stored_expiry_of_1e308_or_infinity_does_not_wedge_the_worker(
    start_worker, database_url
):
    running = await start_worker(database_url)
    settings = running.settings
    values = [1e308, float("inf"), float("nan"), -1e308]
    bad = [new_job("poison.ok", i, expire_after_seconds=v) for i, v in enumerate(values)]
    good = [new_job("poison.ok", 100 + i) for i in range(GOOD)]
    await enqueue(settings, [*bad, *good])
    await wait_all(settings, [j.id for j in [*bad, *good]], {"Succeeded"})
    for job in good:
        row, history = await read(settings, job.id)
        assert [h.state for h in history] == ["Enqueued", "Processing", "Succeeded"]
    for job, value in zip(bad, values, strict=True):
        row, _ = await read(settings, job.id)
        assert row.attempt == 1
        if row.expire_after_seconds is None:  # SQLite stores NaN as NULL: the retention
            assert row.expires_at == row.finished_at + settings.job_retention
        elif value > 0 or value != value:  # far in the future: as late as the store can say
            assert row.expires_at == outcomes.FAR_FUTURE, value
        else:
            assert row.expires_at == row.finished_at
    await _still_consuming(settings)


async def test_a_retry_delay_of_1e308_is_clamped(start_worker, database_url):
    running = await start_worker(database_url)
    settings = running.settings
    [job] = [new_job("poison.fails", "boom", options={"retry_delays": [1e308]})]
    await enqueue(settings, [job])
    await wait_all(settings, [job.id], {"Scheduled"})
    row, history = await read(settings, job.id)
    assert (row.scheduled_reason, row.retries_used) == ("retry", 1)
    # The longest delay the outbox holds (68 years), not an overflow.
    assert row.due_at == history[-1].at + timedelta(seconds=outcomes.MAX_DELAY_SECONDS)
    assert history[-1].data["delay"] == outcomes.MAX_DELAY_SECONDS
    await _still_consuming(settings)


async def _poke(settings: Settings, job_id: uuid.UUID, column: str, text: str) -> None:
    """Store ``text`` as the raw JSON of ``column``, as an older version could have."""
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            value = "CAST(:v AS jsonb)" if postgres else ":v"
            await conn.execute(
                sa.text(f"UPDATE jobs SET {column} = {value} WHERE id = :id"),
                {"v": text, "id": job_id if postgres else job_id.hex},
            )
    finally:
        await engine.dispose()


async def test_stored_arguments_the_worker_cannot_read_fail_only_their_job(
    start_worker, database_url
):
    """Arguments nested past Python's parser, or holding an integer past its digit limit
    (PostgreSQL's jsonb holds both), fail their job, not retried; the others run."""
    running = await start_worker(database_url)
    settings = running.settings
    deep = new_job("poison.ok", 1)
    big = new_job("poison.ok", 2)
    good = [new_job("poison.ok", 100 + i) for i in range(GOOD)]
    # Created first, then changed (as if an older version had stored them), then published.
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            pending = await store.create_jobs(conn, [deep, big, *good], await db_now(conn))
    finally:
        await engine.dispose()
    await _poke(settings, deep.id, "args", "[" * 5000 + "]" * 5000)
    await _poke(settings, big.id, "args", "[" + "9" * 5000 + "]")
    await publish(settings, [p.message for p in pending])
    await wait_all(settings, [j.id for j in good], {"Succeeded"})
    await wait_all(settings, [deep.id, big.id], {"Failed"})
    for job in (deep, big):
        row, history = await read(settings, job.id)
        assert row.error_type == "orchestrator.errors.JobValidationError"
        assert row.error_message.startswith("the stored arguments cannot be read: ")
        assert [h.state for h in history] == ["Enqueued", "Processing", "Failed"]
    for job in good:
        _, history = await read(settings, job.id)
        assert [h.state for h in history] == ["Enqueued", "Processing", "Succeeded"]
    await _still_consuming(settings)
