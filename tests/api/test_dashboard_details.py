"""Issue 14, point 11: a batch's own page, run facts in the Processing and Succeeded lists,
Replay only where it can work, counts in the right number, cron in words, "Job not found"."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from orchestrator import store
from orchestrator.db import db_now
from orchestrator.lifecycle import State
from orchestrator_api.dashboard.web import plural
from tests.api.conftest import ADD, ECHO, Api
from tests.api.dashboard_pages import act, add_dead_letter, open_page, read


async def _batch(api: Api, size: int, on_complete: bool = True) -> dict[str, object]:
    body: dict[str, object] = {"jobs": [{"job": ADD, "args": [i, i]} for i in range(size)]}
    if on_complete:
        body["on_complete"] = {"job": ECHO, "args": ["all done"]}
    response = await api.http.post("/api/v1/batches", json=body)
    assert response.status_code == 201, response.text
    answer: dict[str, object] = response.json()
    return answer


async def test_a_batch_has_a_page_linked_from_the_list(api: Api) -> None:
    batch = await _batch(api, 3)
    members = [str(j) for j in batch["job_ids"]]  # type: ignore[attr-defined]
    await api.move(members[0], State.PROCESSING, State.SUCCEEDED)
    await api.move(members[1], State.PROCESSING, State.FAILED)
    path = f"/hangfire/batches/{batch['id']}"

    listed = await open_page(api, "/hangfire/batches")
    assert path in listed.links
    member = await open_page(api, f"/hangfire/jobs/{members[2]}")
    assert path in member.links

    page = await open_page(api, path)
    assert page.h1 == "Batch"
    assert set(members) <= set(page.job_links)
    assert str(batch["continuation_id"]) in page.job_links
    html = (await api.http.get(path)).text
    assert "2 of 3 jobs ended: 1 succeeded, 1 failed, 0 deleted, 1 pending" in html
    assert "Running" in html and "Awaiting" in html  # the continuation waits for the last one

    failed_only = await open_page(api, f"{path}?state=Failed")
    assert set(failed_only.job_links) == {members[1], str(batch["continuation_id"])}
    assert {"Requeue", "Delete"} <= set(failed_only.buttons)  # members act like any job row
    after = await act(api, f"/hangfire/jobs/{members[1]}/requeue", {"next": f"{path}?state=Failed"})
    assert after.h1 == "Batch" and after.status == f"Job {members[1]} requeued."


async def test_a_batch_page_pages_through_its_members(api: Api) -> None:
    batch = await _batch(api, 55, on_complete=False)
    path = f"/hangfire/batches/{batch['id']}"
    first = (await api.http.get(path)).text
    seen = read(first).job_links
    match = re.search(r'href="([^"]+)" rel="next"', first)
    assert match is not None and len(seen) == 50
    second = await open_page(api, match.group(1).replace("&amp;", "&"))
    seen += second.job_links
    assert sorted(seen) == sorted(str(j) for j in batch["job_ids"])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "heading", "named"),
    [
        ("/hangfire/jobs/{missing}", "Job not found", "{missing}"),
        ("/hangfire/jobs/not-a-job", "Job not found", "not-a-job"),
        ("/hangfire/batches/{missing}", "Batch not found", "{missing}"),
        ("/hangfire/batches/nope", "Batch not found", "nope"),
    ],
)
async def test_unknown_ids_answer_404_pages_named_for_what_is_missing(
    api: Api, path: str, heading: str, named: str
) -> None:
    missing = str(uuid.uuid4())
    response = await api.http.get(path.format(missing=missing))
    assert response.status_code == 404
    page = read(response.text)
    assert page.h1 == heading
    assert named.format(missing=missing) in page.status
    assert "Refused" not in response.text


async def test_replay_is_offered_only_for_a_letter_naming_a_job_that_exists(api: Api) -> None:
    job_id = await api.enqueue()
    await add_dead_letter(api, job_id)
    await add_dead_letter(api, None)  # not a job message
    await add_dead_letter(api, str(uuid.uuid4()))  # a job that has expired
    page = await open_page(api, "/hangfire/dead-letters")
    assert page.buttons.count("Replay") == 1
    assert page.buttons.count("Discard") == 3
    assert page.job_links == [job_id]
    html = (await api.http.get("/hangfire/dead-letters")).text
    assert "none: not a job message" in html and "(no such job)" in html


async def test_counts_are_in_the_right_number(api: Api) -> None:
    assert plural(1, "job") == "1 job"
    assert plural(0, "job") == "0 jobs"
    assert plural((10_000, True), "job") == "10,000+ jobs"
    assert plural((1, False), "failed job") == "1 failed job"
    retry = await api.enqueue(ADD, args=[1, 1])
    await api.move(retry, State.PROCESSING, State.FAILED)
    async with api.runtime.engine.begin() as conn:  # as the retry filter leaves a job
        await conn.execute(
            sa.update(store.jobs_table)
            .where(store.jobs_table.c.id == uuid.UUID(retry))
            .values(state=State.SCHEDULED.value, scheduled_reason="retry")
        )
    retries = (await api.http.get("/hangfire/retries")).text
    assert "1 job waits for an automatic retry" in retries
    batch = await _batch(api, 1, on_complete=False)
    assert "0 of 1 job ended" in (await api.http.get(f"/hangfire/batches/{batch['id']}")).text
    async with api.runtime.engine.begin() as conn:  # as the scheduler counts a lost worker
        await conn.execute(sa.update(store.jobs_table).values(lost_count=1))
    assert "worker lost 1 time)" in (await api.http.get(f"/hangfire/jobs/{retry}")).text


async def test_processing_and_succeeded_lists_show_started_worker_and_duration(api: Api) -> None:
    running, done = await api.enqueue(ADD, args=[1, 1]), await api.enqueue(ADD, args=[2, 2])
    await api.move(running, State.PROCESSING)
    await api.move(done, State.PROCESSING, State.SUCCEEDED)
    async with api.runtime.engine.begin() as conn:
        now = await db_now(conn)
        jobs = store.jobs_table
        for job_id, started, finished in (
            (running, now - timedelta(minutes=3, seconds=5), None),
            (done, now - timedelta(seconds=10), now - timedelta(seconds=7, milliseconds=500)),
        ):
            await conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == uuid.UUID(job_id))
                .values(started_at=started, finished_at=finished, worker_id="worker:box:42:ab12")
            )
    processing = (await api.http.get("/hangfire/jobs?state=Processing")).text
    for column in ("Started", "Worker", "Running for", "Created"):
        assert f">{column}" in processing, column
    assert "worker:box:42:ab12" in processing and "/hangfire/servers#server-" in processing
    assert re.search(r">3 min [5-9] s<", processing), "running for about 3 min 5 s"
    succeeded = (await api.http.get("/hangfire/jobs?state=Succeeded")).text
    assert ">Duration" in succeeded and ">2.50 s<" in succeeded
    everything = (await api.http.get("/hangfire/jobs")).text
    assert ">Worker" not in everything  # only the lists where every row ran


async def test_recurring_jobs_show_their_cron_in_words_in_their_time_zone(api: Api) -> None:
    for recurring_id, cron, zone in (
        ("nightly", "0 3 * * *", "UTC"),
        ("weekly", "0 9 * * 1", "Europe/Berlin"),
        ("often", "*/10 * * * * *", "UTC"),
        ("daily-macro", "@daily", "Asia/Tokyo"),
    ):
        body = {"job": ADD, "args": [1, 1], "cron": cron, "timezone": zone}
        response = await api.http.put(f"/api/v1/recurring/{recurring_id}", json=body)
        assert response.status_code == 201, response.text
    page = (await api.http.get("/hangfire/recurring")).text
    assert "At 03:00 (UTC)" in page
    assert "At 09:00, only on Monday (Europe/Berlin)" in page
    assert "Every 10 seconds (UTC)" in page
    assert "At 00:00 (Asia/Tokyo)" in page


