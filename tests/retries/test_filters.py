"""Filters as a user writes them: refusing at enqueue, timing runs, electing another state."""

from __future__ import annotations

import asyncio
import uuid

from tests.api.conftest import ECHO
from tests.retries import user_filters
from tests.retries.conftest import enqueue, new_job, read, wait_for

FILTERS = ["tests.retries.user_filters:refuse_mallory"]


async def test_a_client_filter_refuses_a_job_and_adds_parameters(start_api, postgres_url):
    async with start_api(postgres_url, filters=FILTERS) as api:
        refused = await api.http.post("/api/v1/jobs", json={"job": ECHO, "args": ["mallory"]})
        assert refused.status_code == 422
        assert "mallory may not enqueue jobs" in refused.json()["error"]["message"]
        assert await api.count() == 0  # nothing stored
        job_id = await api.enqueue(ECHO, args=["alice"])
        async with api.runtime.engine.connect() as conn:
            from orchestrator import store

            row = await store.get_job(conn, uuid.UUID(job_id))
        assert row.options["parameters"] == {"tenant": "acme"}
        for _ in range(100):
            if any(str(c.job_id) == job_id for c in user_filters.CREATED):
                break
            await asyncio.sleep(0.02)
        created = next(c for c in user_filters.CREATED if str(c.job_id) == job_id)
        assert (created.name, created.parameters) == (ECHO, {"tenant": "acme"})


async def test_around_filters_nest_and_see_every_run(start_worker, postgres_url):
    timing = user_filters.Timing()
    settings = await start_worker(postgres_url, filters=[timing])
    [ok, flaky] = await enqueue(settings, [new_job("retry.ok", 3), new_job("retry.flaky")])
    await wait_for(settings, ok, {"Succeeded"})
    await wait_for(settings, flaky, {"Succeeded"})
    runs = sorted((name, attempt, outcome) for name, attempt, _, outcome in timing.runs)
    assert runs == [
        ("retry.flaky", 1, "failed"),
        ("retry.flaky", 2, "succeeded"),
        ("retry.ok", 1, "succeeded"),
    ]


async def test_an_election_filter_replaces_failed_with_deleted(start_worker, postgres_url):
    settings = await start_worker(postgres_url, filters=[user_filters.DeleteOnKeyError()])
    [key_error, other] = await enqueue(
        settings, [new_job("retry.not_on_key"), new_job("retry.only_connection", "value")]
    )
    row, history = await wait_for(settings, key_error, {"Deleted", "Failed"})
    assert row.state == "Deleted"
    assert history[-1].reason == "Deleted by filter: KeyError 'missing'"
    row, _ = await wait_for(settings, other, {"Deleted", "Failed"})
    assert row.state == "Failed"  # not a KeyError: the filter leaves it alone
    assert (await read(settings, key_error))[0].expires_at is not None  # Deleted expires


