"""Secret job arguments through the API: never read back, in a job or a recurring definition
(where they are marked and how they are redacted: tests/unit/test_redaction.py)."""

from __future__ import annotations

import uuid

from orchestrator import store
from orchestrator.redaction import REDACTED
from tests.api.conftest import TEST_JOBS, ApiFactory
from tests.tracing.jobs import PASSWORD

SIGN_IN = "tests.tracing.jobs.sign_in"


async def test_the_api_never_reads_a_secret_back(start_api: ApiFactory, database_url: str) -> None:
    async with start_api(database_url, jobs=[TEST_JOBS, "tests.tracing.jobs"]) as api:
        job_id = await api.enqueue(SIGN_IN, args=["ann"], kwargs={"password": PASSWORD})
        shown = (await api.http.get(f"/api/v1/jobs/{job_id}")).json()
        assert shown["args"] == ["ann"] and shown["kwargs"] == {"password": REDACTED}
        listed = (await api.http.get("/api/v1/jobs", params={"job": SIGN_IN})).json()
        assert [item["args"] for item in listed["items"]] == [["ann"]]
        assert [item["kwargs"] for item in listed["items"]] == [{"password": REDACTED}]

        definition = {"job": SIGN_IN, "args": ["ann", PASSWORD], "cron": "@daily"}
        saved = await api.http.put("/api/v1/recurring/daily-sign-in", json=definition)
        assert saved.status_code == 201, saved.text
        assert saved.json()["args"] == ["ann", REDACTED]
        read = (await api.http.get("/api/v1/recurring/daily-sign-in")).json()
        assert read["args"] == ["ann", REDACTED]
        everything = (await api.http.get("/api/v1/recurring")).text
        assert PASSWORD not in everything
        # The dashboard's pages that show arguments.
        for page in (f"/hangfire/jobs/{job_id}", "/hangfire/jobs", "/hangfire/recurring"):
            html = await api.http.get(page)
            assert html.status_code == 200, (page, html.status_code)
            assert PASSWORD not in html.text and REDACTED in html.text, page
        # The stored job keeps the real value: the worker needs it.
        async with api.runtime.engine.connect() as conn:
            stored = await store.get_job(conn, uuid.UUID(job_id))
        assert stored.kwargs == {"password": PASSWORD}
