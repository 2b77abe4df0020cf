"""``/api/v1/recurring`` on PostgreSQL and SQLite, in-process (tests/api/conftest.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest

from orchestrator import recurring
from orchestrator.catalog import Catalog
from orchestrator.db import db_now
from orchestrator.store import registrations as store_registrations
from orchestrator_scheduler.recurring import fire_due
from tests.api.conftest import ADD, TEST_JOBS, URGENT, Api

BASE = "/api/v1/recurring"


def body(**fields: Any) -> dict[str, Any]:
    return {"job": ADD, "args": [1, 2], "cron": "*/5 * * * *", **fields}


async def put(api: Api, recurring_id: str = "nightly", **fields: Any) -> Any:
    return await api.http.put(f"{BASE}/{recurring_id}", json=body(**fields))


async def test_add_or_update_read_list_delete(api: Api) -> None:
    created = await put(api, timezone="Europe/Berlin", retries=2)
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["id"] == "nightly" and view["job"] == ADD and view["args"] == [1, 2]
    assert view["kwargs"] == {} and view["timezone"] == "Europe/Berlin" and view["queue"] is None
    assert view["paused"] is False and view["error"] is None and view["retries"] == 2
    assert view["last_run_at"] is None and view["last_job_id"] is None
    assert view["last_job_state"] is None
    assert datetime.fromisoformat(view["next_run_at"]).minute % 5 == 0

    updated = await put(api, args=[5, 6], queue="low", cron="@hourly", misfire="strict")
    assert updated.status_code == 200, updated.text
    again = (await api.http.get(f"{BASE}/nightly")).json()
    assert again["args"] == [5, 6] and again["queue"] == "low" and again["cron"] == "@hourly"
    assert again["misfire"] == "strict" and again["timezone"] == "UTC"
    assert datetime.fromisoformat(again["next_run_at"]).minute == 0

    assert (await put(api, "second")).status_code == 201
    items = (await api.http.get(BASE)).json()["items"]
    assert [item["id"] for item in items] == ["nightly", "second"]

    assert (await api.http.delete(f"{BASE}/nightly")).status_code == 200
    missing = await api.http.get(f"{BASE}/nightly")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert (await api.http.delete(f"{BASE}/nightly")).status_code == 404


async def test_updating_without_changing_the_schedule_keeps_next_run(api: Api) -> None:
    first = (await put(api)).json()
    second = (await put(api, args=[3, 4])).json()
    assert second["next_run_at"] == first["next_run_at"]


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"cron": "61 * * * *"}, "invalid_cron", "Bad minute"),
        ({"cron": "* * *"}, "invalid_cron", "expected 5 fields"),
        ({"cron": "@fortnightly"}, "invalid_cron", "unknown cron macro"),
        ({"timezone": "Mars/Olympus"}, "invalid_timezone", "Mars/Olympus"),
        ({"job": "no.such.job"}, "invalid_job", "no.such.job"),
        ({"args": ["x", 2]}, "invalid_job", "argument 'a'"),
        ({"args": [1]}, "invalid_job", "'b'"),
        ({"misfire": "sometimes"}, "invalid_request", "misfire"),
        ({"overlap": "never"}, "invalid_request", "overlap"),
        ({"queue": "Bad Queue"}, "invalid_request", "queue"),
        ({"retries": -1}, "invalid_request", "retries"),
    ],
)
async def test_invalid_definitions_are_422_naming_the_problem(
    api: Api, fields: dict[str, Any], code: str, words: str
) -> None:
    response = await put(api, **fields)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"]
    assert (await api.http.get(f"{BASE}/nightly")).status_code == 404


async def test_unknown_id_is_404_everywhere(api: Api) -> None:
    for method, path in [
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/trigger"),
        ("POST", "/pause"),
        ("POST", "/resume"),
    ]:
        response = await api.http.request(method, f"{BASE}/ghost{path}")
        assert response.status_code == 404, (method, path)
        assert "ghost" in response.json()["error"]["message"]


async def test_trigger_runs_now_and_keeps_next_run(api: Api) -> None:
    before = (await put(api, job=URGENT, args=[21], retries=1)).json()
    answer = await api.http.post(f"{BASE}/nightly/trigger")
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["job_id"]
    job = (await api.http.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["state"] == "Enqueued" and job["job"] == URGENT and job["args"] == [21]
    assert job["recurring_id"] == "nightly" and job["queue"] == "critical" and job["retries"] == 1
    after = (await api.http.get(f"{BASE}/nightly")).json()
    assert after["next_run_at"] == before["next_run_at"]
    assert after["last_job_id"] == job_id and after["last_job_state"] == "Enqueued"
    assert len(await api.outbox_for(job_id)) == 1


async def test_pause_and_resume(api: Api) -> None:
    await put(api, cron="* * * * * *")
    paused = (await api.http.post(f"{BASE}/nightly/pause")).json()
    assert paused["paused"] is True and paused["next_run_at"] is None
    async with api.runtime.engine.begin() as conn:
        now = await db_now(conn)
        assert (await fire_due(conn, now.replace(year=now.year + 1))).runs == 0
    resumed = (await api.http.post(f"{BASE}/nightly/resume")).json()
    assert resumed["paused"] is False
    assert datetime.fromisoformat(resumed["next_run_at"]) > now
    # Updating a paused definition leaves it paused.
    await api.http.post(f"{BASE}/nightly/pause")
    assert (await put(api, args=[9, 9])).json()["paused"] is True


async def test_scheduler_runs_appear_with_last_state(api: Api) -> None:
    await put(api, cron="* * * * * *")
    async with api.runtime.engine.begin() as conn:
        # The scheduler checks runs against what workers registered in the store.
        registrations = Catalog.from_modules([TEST_JOBS]).registrations()
        await store_registrations.save(conn, registrations, await db_now(conn))
        row = await recurring.get(conn, "nightly")
        fired = await fire_due(conn, row.next_run_at)
    assert fired.runs == 1
    view = (await api.http.get(f"{BASE}/nightly")).json()
    job_id = view["last_job_id"]
    assert view["last_job_state"] == "Enqueued" and view["last_run_at"] is not None
    job = (await api.http.get(f"/api/v1/jobs/{uuid.UUID(job_id)}")).json()
    assert job["recurring_id"] == "nightly"
    listed = (await api.http.get("/api/v1/jobs", params={"job": ADD})).json()["items"]
    assert [item["id"] for item in listed] == [job_id]
