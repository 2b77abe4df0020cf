"""Dashboard actions change the store as the API's endpoints do; lists filter, sort and page."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import sqlalchemy as sa

from orchestrator import job_search, store
from orchestrator.db import db_now
from orchestrator.lifecycle import State
from orchestrator.store import search as store_search
from orchestrator.topology import declare_control_queue
from orchestrator_api.dashboard.overview import OutcomeRates
from orchestrator_api.dashboard.web import count_text
from tests.api.conftest import ADD, ECHO, FAIL, Api
from tests.api.dashboard_pages import act, add_dead_letter, job_state, open_page, post, read


async def _history_reasons(api: Api, job_id: str) -> list[str]:
    async with api.runtime.engine.connect() as conn:
        return [h.reason or "" for h in await store.get_history(conn, uuid.UUID(job_id))]


async def test_job_actions_change_the_store(api: Api) -> None:
    failed = await api.enqueue(ADD, args=[1, 1])
    await api.move(failed, State.PROCESSING, State.FAILED)
    page = await act(api, f"/hangfire/jobs/{failed}/requeue", {"next": f"/hangfire/jobs/{failed}"})
    assert page.status == f"Job {failed} requeued."
    assert page.job_state == "Enqueued"
    assert await job_state(api, failed) == "Enqueued"
    assert (await _history_reasons(api, failed))[-1] == "Requeued through the API"
    assert len(await api.outbox_for(failed)) == 2  # created, then requeued

    # Requeue from Enqueued is refused with the API's reason; nothing changes.
    page = await act(api, f"/hangfire/jobs/{failed}/requeue")
    assert "only jobs not queued or running can be requeued" in page.status
    assert await job_state(api, failed) == "Enqueued"

    scheduled = await api.enqueue(ADD, args=[2, 2], delay_seconds=3600)
    page = await act(api, f"/hangfire/jobs/{scheduled}/enqueue")
    assert page.status == f"Job {scheduled} enqueued now."
    assert await job_state(api, scheduled) == "Enqueued"

    page = await act(api, f"/hangfire/jobs/{scheduled}/delete", {"next": "/hangfire/jobs"})
    assert page.h1 == "Jobs" and page.status == f"Job {scheduled} deleted."
    assert await job_state(api, scheduled) == "Deleted"

    missing = uuid.uuid4()
    page = await act(api, f"/hangfire/jobs/{missing}/delete", {"next": "/hangfire/jobs"})
    assert f"no job with id {missing}" in page.status


async def test_after_an_action_only_dashboard_paths_are_followed(api: Api) -> None:
    job_id = await api.enqueue()
    for evil in ("https://example.com/", "//example.com/hangfire", "/hangfire/..//x", "/api/v1"):
        response = await post(api, f"/hangfire/jobs/{job_id}/delete", {"next": evil})
        assert response.status_code == 303
        assert response.headers["location"] == f"/hangfire/jobs/{job_id}", evil


async def test_bulk_actions_on_selected_and_all_failed(api: Api) -> None:
    failed = [await api.enqueue(ADD, args=[i, i]) for i in range(3)]
    for job_id in failed:
        await api.move(job_id, State.PROCESSING, State.FAILED)
    running = await api.enqueue(ADD, args=[9, 9])
    page = await act(
        api,
        "/hangfire/actions/requeue-selected",
        {"job": [failed[0], failed[1], running], "next": "/hangfire/jobs?state=Failed"},
    )
    assert page.status.startswith("Requeued 2 of 3 jobs. Not changed: job")
    assert [await job_state(api, j) for j in failed] == ["Enqueued", "Enqueued", "Failed"]

    page = await act(api, "/hangfire/actions/delete-selected", {"job": failed[:2]})
    assert page.status == "Deleted 2 of 2 jobs."
    assert [await job_state(api, j) for j in failed[:2]] == ["Deleted", "Deleted"]

    page = await act(api, "/hangfire/actions/requeue-selected", {})
    assert page.status == "No jobs were selected."

    page = await act(api, "/hangfire/actions/requeue-failed", {})
    assert page.status == "Requeued 1 failed job."
    assert await job_state(api, failed[2]) == "Enqueued"
    page = await act(api, "/hangfire/actions/requeue-failed", {})
    assert page.status == "There are no failed jobs."


async def test_recurring_actions(api: Api) -> None:
    put = await api.http.put(
        "/api/v1/recurring/nightly", json={"job": ADD, "args": [5, 5], "cron": "0 3 * * *"}
    )
    assert put.status_code == 201
    page = await act(api, "/hangfire/recurring/nightly/trigger")
    assert page.status.startswith("Recurring job 'nightly' triggered: job ")
    run_id = page.status.removesuffix(".").rsplit(" ", 1)[-1]
    assert run_id in page.job_links  # the last run, with its state
    async with api.runtime.engine.connect() as conn:
        assert (await store.get_job(conn, uuid.UUID(run_id))).recurring_id == "nightly"

    page = await act(api, "/hangfire/recurring/nightly/pause")
    assert page.status == "Recurring job 'nightly' paused."
    assert "Resume" in page.buttons and "Pause" not in page.buttons
    assert (await api.http.get("/api/v1/recurring/nightly")).json()["paused"] is True
    page = await act(api, "/hangfire/recurring/nightly/resume")
    assert "Pause" in page.buttons
    assert (await api.http.get("/api/v1/recurring/nightly")).json()["paused"] is False

    page = await act(api, "/hangfire/recurring/nightly/delete")
    assert page.status.startswith("Recurring job 'nightly' deleted")
    assert (await api.http.get("/api/v1/recurring/nightly")).status_code == 404
    page = await act(api, "/hangfire/recurring/nightly/pause")
    assert "no recurring job with id 'nightly'" in page.status


async def test_dead_letter_actions(api: Api) -> None:
    job_id = await api.enqueue()
    named = await add_dead_letter(api, job_id)
    anonymous = await add_dead_letter(api, None)
    page = await act(api, f"/hangfire/dead-letters/{named}/replay")
    assert page.status == f"Dead letter {named} replayed: job {job_id} republished."
    assert len(await api.outbox_for(job_id)) == 2
    page = await act(api, f"/hangfire/dead-letters/{anonymous}/replay")
    assert "nothing to replay" in page.status
    page = await act(api, f"/hangfire/dead-letters/{anonymous}/discard")
    assert page.status == f"Dead letter {anonymous} discarded."
    assert await api.count("dead_letters") == 0


async def test_deleting_a_processing_job_signals_its_worker(
    start_api: Any, postgres_url: str
) -> None:
    """The dashboard's Delete is the API's DELETE: the cancel signal goes to the workers."""
    async with start_api(postgres_url) as api:
        for _ in range(100):
            if api.runtime.broker.connected and api.runtime.sender.publisher is not None:
                break
            await asyncio.sleep(0.1)
        connection = await aio_pika.connect(api.settings.amqp_url)
        async with connection:
            channel = await connection.channel()
            signals = await declare_control_queue(channel, api.runtime.broker.topology)
            job_id = await api.enqueue()
            await api.move(job_id, State.PROCESSING)
            page = await act(api, f"/hangfire/jobs/{job_id}/delete")
            assert page.status == f"Job {job_id} deleted." and page.job_state == "Deleted"
            message = await signals.get(timeout=10)
            assert json.loads(message.body) == {"cancel": job_id}
            await message.ack()


async def _jobs_page(api: Api, query: str) -> Any:
    return await open_page(api, f"/hangfire/jobs?{query}")


async def test_filters_sorts_and_keyset_pages(api: Api) -> None:
    adds = [await api.enqueue(ADD, args=[i, 100 + i]) for i in range(60)]
    echoes = [await api.enqueue(ECHO, args=[f"find me {i}"], queue="other") for i in range(5)]
    for job_id in echoes[:2]:
        await api.move(job_id, State.PROCESSING, State.FAILED)

    # Paging: 50, then the rest, each once, newest first, by following "Next page".
    first = await _jobs_page(api, f"name={ADD}")
    assert len(first.job_links) == 50
    assert first.job_links == list(reversed(adds))[:50]
    response = await api.http.get(f"/hangfire/jobs?name={ADD}")
    next_url = next(link for link in read(response.text).links if "after=" in link)
    second = await open_page(api, next_url.replace("&amp;", "&"))
    assert second.job_links == list(reversed(adds))[50:]
    oldest = await _jobs_page(api, f"name={ADD}&sort=created")
    assert oldest.job_links == adds[:50]

    assert set((await _jobs_page(api, "queue=other")).job_links) == set(echoes)
    assert set((await _jobs_page(api, "state=Failed")).job_links) == set(echoes[:2])
    assert set((await _jobs_page(api, "state=Failed&queue=default")).job_links) == set()
    assert (await _jobs_page(api, "q=find+me+3")).job_links == [echoes[3]]
    assert (await _jobs_page(api, "q=FIND+ME+3")).job_links == [echoes[3]]  # any case
    assert (await _jobs_page(api, "q=105")).job_links == [adds[5]]
    assert (await _jobs_page(api, "q=%25")).job_links == []  # LIKE wildcards are literal
    by_name = await _jobs_page(api, "sort=name")
    assert by_name.job_links[:5] == adds[:5]  # add < echo; within a name, oldest first
    by_name_desc = await _jobs_page(api, "sort=-name")
    assert set(by_name_desc.job_links[:5]) == set(echoes)

    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert (await _jobs_page(api, f"from={future}")).job_links == []
    assert len((await _jobs_page(api, f"to={future}")).job_links) == 50
    for bad in ("state=Nope", "sort=id", "from=yesterday", "after=not-a-cursor"):
        assert (await api.http.get(f"/hangfire/jobs?{bad}")).status_code == 400, bad


async def test_counts_are_bounded(api: Api) -> None:
    for _ in range(4):
        await api.enqueue()
    async with api.runtime.engine.connect() as conn:
        counts = await store_search.state_counts(conn, bound=3)
        assert counts["Enqueued"] == (3, True)
        assert counts["Failed"] == (0, False)
        exact = await store_search.bounded_count(conn, job_search.Search(state=State.ENQUEUED), 4)
        assert exact == (4, False)
    assert count_text((10_000, True)) == "10,000+"
    assert count_text((1234, False)) == "1,234"


async def test_realtime_and_history_graphs_count_outcomes(api: Api) -> None:
    ok = [await api.enqueue() for _ in range(3)]
    bad = await api.enqueue(FAIL)
    for job_id in ok:
        await api.move(job_id, State.PROCESSING, State.SUCCEEDED)
    await api.move(bad, State.PROCESSING, State.FAILED)
    realtime = (await api.http.get("/hangfire/realtime")).text
    assert 'aria-label="Jobs per second, last minute: Succeeded 3, Failed 1"' in realtime
    # Polled again: the seconds already counted are not counted twice.
    again = (await api.http.get("/hangfire/realtime")).text
    assert "Succeeded 3, Failed 1" in again
    overview = (await api.http.get("/hangfire")).text
    assert "Jobs per hour, last 24 hours (UTC): Succeeded 3, Failed 1" in overview
    assert "Jobs per day, last 7 days (UTC): Succeeded 3, Failed 1" in overview
    # The history graph reads the persistent counters, which outlive the jobs.
    async with api.runtime.engine.begin() as conn:
        await conn.execute(sa.delete(store.history_table))
        await conn.execute(sa.delete(store.jobs_table))
    overview = (await api.http.get("/hangfire")).text
    assert "Jobs per hour, last 24 hours (UTC): Succeeded 3, Failed 1" in overview


async def test_a_text_search_past_its_time_limit_is_stopped(
    start_api: Any, postgres_url: str, monkeypatch: Any
) -> None:
    """Without the opt-in trigram index a rare term reads every row; PostgreSQL stops it."""
    async with start_api(postgres_url) as api:
        async with api.runtime.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO jobs (id, name, queue, args, kwargs, state, attempt, retries, "
                    "retries_used, created_at, state_changed_at, options) "
                    "SELECT gen_random_uuid(), 'x', 'default', jsonb_build_array(g), '{}', "
                    "'Enqueued', 0, 0, 0, now(), now(), '{}' FROM generate_series(1, 50000) g"
                )
            )
        monkeypatch.setattr(store_search, "TEXT_SEARCH_TIMEOUT_MS", 1)
        slow = await api.http.get("/hangfire/jobs?q=no-such-text")
        assert slow.status_code == 422
        assert "text search took too long" in read(slow.text).status
        monkeypatch.setattr(store_search, "TEXT_SEARCH_TIMEOUT_MS", 60_000)
        found = await _jobs_page(api, "q=%5B49999%5D")  # the arguments [49999]
        assert len(found.job_links) == 1


async def test_realtime_reads_only_the_seconds_not_yet_final(api: Api) -> None:
    """Seconds over by more than SETTLE are kept by the API process and not read again."""
    job_id = uuid.UUID(await api.enqueue())
    async with api.runtime.engine.begin() as conn:
        at = await db_now(conn) - timedelta(seconds=20)
        await conn.execute(
            sa.insert(store.history_table),
            [
                {"job_id": job_id, "state": state, "at": at, "reason": "test"}
                for state in ("Succeeded", "Succeeded", "Failed", "Processing")
            ],
        )
    rates = OutcomeRates()
    async with api.runtime.engine.connect() as conn:
        start, values = await rates.series(conn)
    second = int(at.timestamp()) - start
    assert values["Succeeded"][second] == 2 and values["Failed"][second] == 1
    assert sum(values["Succeeded"]) == 2 and sum(values["Failed"]) == 1
    async with api.runtime.engine.begin() as conn:
        await conn.execute(sa.delete(store.history_table))
    async with api.runtime.engine.connect() as conn:
        _, again = await rates.series(conn)
    assert sum(again["Succeeded"]) == 2  # from the process's own record of that second
    async with api.runtime.engine.connect() as conn:
        _, fresh = await OutcomeRates().series(conn)
    assert sum(fresh["Succeeded"]) == 0  # a new process reads the store, which is empty now
