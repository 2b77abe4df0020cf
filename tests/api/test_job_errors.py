"""The job read's ``error`` and each history entry's own ``error`` (issue 14, point 7): a
Succeeded job shows none, also a row an older version stored with its last failed attempt's
error kept; a failed attempt's exception is shown apart from its history row's other data.
(A real worker writes them: tests/retries/test_attempt_errors.py.)"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from orchestrator import composition, store
from orchestrator.db import db_now
from orchestrator.lifecycle import Change, State
from tests.api.conftest import Api

ERROR = {"type": "builtins.RuntimeError", "message": "attempt 1 failed", "traceback": "Tb\n"}


async def _fail_then_succeed(api: Api, job_id: str) -> None:
    """Processing, Failed with the attempt's exception in its row and the job's columns (as the
    worker records it), requeued, then Succeeded with the columns left as they were."""
    columns = {f"error_{part}": value for part, value in ERROR.items()}
    await _move(api, job_id, State.ENQUEUED, State.PROCESSING)
    data = {"attempt": 1, "duration": 0.5, "error": ERROR}
    await _move(api, job_id, State.PROCESSING, State.FAILED, values=columns, data=data)
    await _move(api, job_id, State.FAILED, State.ENQUEUED)
    await _move(api, job_id, State.ENQUEUED, State.PROCESSING)
    await _move(api, job_id, State.PROCESSING, State.SUCCEEDED, data={"duration": 0.1})


async def _move(api: Api, job_id: str, source: State, target: State, **change: Any) -> None:
    async with api.runtime.engine.begin() as conn:
        moved = await composition.transitions(timedelta(hours=1)).move(
            conn,
            [uuid.UUID(job_id)],
            expected=[source],
            target=target,
            change=Change("test", **change),
            now=await db_now(conn),
        )
    assert moved


async def test_a_succeeded_job_shows_no_error_and_its_failed_attempt_in_history(
    api: Api,
) -> None:
    job_id = await api.enqueue()
    await _fail_then_succeed(api, job_id)
    async with api.runtime.engine.connect() as conn:
        row = await store.get_job(conn, uuid.UUID(job_id))
    assert row.error_type == ERROR["type"]  # stored as an older version left it

    job = (await api.http.get(f"/api/v1/jobs/{job_id}")).json()
    assert (job["state"], job["error"]) == ("Succeeded", None)
    entries = [(h["state"], h["data"], h["error"]) for h in job["history"]]
    assert entries[2] == ("Failed", {"attempt": 1, "duration": 0.5}, ERROR)
    assert all(error is None for state, _, error in entries if state != "Failed")
    listed = (await api.http.get("/api/v1/jobs", params={"state": "Succeeded"})).json()
    assert [item["error"] for item in listed["items"]] == [None]

    page = (await api.http.get(f"/hangfire/jobs/{job_id}")).text
    assert "<h2>Exception</h2>" not in page and 'class="problem"' not in page
    assert page.count('data-testid="attempt-error"') == 1
    assert "attempt 1 failed" in page


async def test_a_failed_job_shows_its_error_and_a_history_row_without_one(api: Api) -> None:
    job_id = await api.enqueue()
    await api.move(job_id, State.PROCESSING, State.FAILED)  # no exception recorded (a dead letter)
    async with api.runtime.engine.begin() as conn:
        await conn.execute(
            sa.update(store.jobs_table)
            .where(store.jobs_table.c.id == uuid.UUID(job_id))
            .values(error_type="DeadLettered", error_message="rejected")
        )
    job = (await api.http.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["error"] == {"type": "DeadLettered", "message": "rejected", "traceback": None}
    assert [h["error"] for h in job["history"]] == [None, None, None]
    page = (await api.http.get(f"/hangfire/jobs/{job_id}")).text
    assert "<h2>Exception</h2>" in page and 'data-testid="attempt-error"' not in page
