"""POST /api/v1/jobs and /bulk: what is stored, scheduling options, idempotency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator import store
from orchestrator.lifecycle import State
from tests.api.conftest import ADD, ECHO, FAIL, URGENT, Api


async def test_enqueue_stores_job_history_and_outbox_entry(api: Api) -> None:
    response = await api.http.post("/api/v1/jobs", json={"job": ADD, "args": [2, 3]})
    assert response.status_code == 201
    body = response.json()
    assert body["state"] == "Enqueued"
    job = (await api.http.get(f"/api/v1/jobs/{body['id']}")).json()
    assert job["job"] == ADD
    assert job["args"] == [2, 3]
    assert job["kwargs"] == {}
    assert job["queue"] == "default"
    assert job["attempt"] == 0
    assert job["result"] is None
    assert job["error"] is None
    assert [h["state"] for h in job["history"]] == ["Enqueued"]
    entries = await api.outbox_for(body["id"])
    assert len(entries) == 1
    assert entries[0].queue == "default"


async def test_defaults_come_from_the_catalog(api: Api) -> None:
    job_id = await api.enqueue(URGENT, kwargs={"n": 4})
    job = (await api.http.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["queue"] == "critical"
    assert job["retries"] == 3
    job_id = await api.enqueue(FAIL, queue="other", retries=7)
    job = (await api.http.get(f"/api/v1/jobs/{job_id}")).json()
    assert (job["queue"], job["retries"]) == ("other", 7)


async def test_datetime_arguments_are_checked_by_format(api: Api) -> None:
    ok = await api.http.post(
        "/api/v1/jobs", json={"job": ECHO, "kwargs": {"text": "x", "when": "2030-01-01T00:00:00Z"}}
    )
    assert ok.status_code == 201
    bad = await api.http.post(
        "/api/v1/jobs", json={"job": ECHO, "kwargs": {"text": "x", "when": "next tuesday"}}
    )
    assert bad.status_code == 422
    assert "when" in bad.json()["error"]["message"]


async def test_delay_schedules_and_zero_delay_enqueues(api: Api) -> None:
    response = await api.http.post(
        "/api/v1/jobs", json={"job": ADD, "args": [1, 1], "delay_seconds": 60}
    )
    assert response.json()["state"] == "Scheduled"
    job = (await api.http.get(f"/api/v1/jobs/{response.json()['id']}")).json()
    due = datetime.fromisoformat(job["due_at"])
    created = datetime.fromisoformat(job["created_at"])
    assert timedelta(seconds=59) < due - created < timedelta(seconds=61)
    assert await api.outbox_for(response.json()["id"]) == []
    zero = await api.http.post(
        "/api/v1/jobs", json={"job": ADD, "args": [1, 1], "delay_seconds": 0}
    )
    assert zero.json()["state"] == "Enqueued"


async def test_run_at_in_the_future_schedules_and_in_the_past_runs_now(api: Api) -> None:
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    later = await api.http.post("/api/v1/jobs", json={"job": ADD, "args": [1, 1], "run_at": future})
    assert later.json()["state"] == "Scheduled"
    job = (await api.http.get(f"/api/v1/jobs/{later.json()['id']}")).json()
    assert datetime.fromisoformat(job["due_at"]) == datetime.fromisoformat(future)
    now = await api.http.post("/api/v1/jobs", json={"job": ADD, "args": [1, 1], "run_at": past})
    assert now.json()["state"] == "Enqueued"


async def test_continuation_awaits_its_parent(api: Api) -> None:
    parent = await api.enqueue()
    response = await api.http.post(
        "/api/v1/jobs", json={"job": ADD, "args": [1, 1], "continue_after": parent}
    )
    assert response.status_code == 201
    assert response.json()["state"] == "Awaiting"
    child = (await api.http.get(f"/api/v1/jobs/{response.json()['id']}")).json()
    assert child["parent_id"] == parent
    assert await api.outbox_for(child["id"]) == []


async def test_continuation_of_a_succeeded_parent_is_enqueued_at_once(api: Api) -> None:
    parent = await api.enqueue()
    await api.move(parent, State.PROCESSING, State.SUCCEEDED)
    response = await api.http.post(
        "/api/v1/jobs", json={"job": ADD, "args": [1, 1], "continue_after": parent}
    )
    assert response.json()["state"] == "Enqueued"
    assert len(await api.outbox_for(response.json()["id"])) == 1


async def test_continuation_of_an_unknown_job_is_refused(api: Api) -> None:
    response = await api.http.post(
        "/api/v1/jobs", json={"job": ADD, "args": [1, 1], "continue_after": str(uuid.uuid4())}
    )
    assert response.status_code == 422
    assert "continue_after" in response.json()["error"]["message"]
    assert await api.count() == 0


async def test_idempotency_key_returns_the_first_job(api: Api) -> None:
    body = {"job": ADD, "args": [1, 2], "idempotency_key": "order-17"}
    first = await api.http.post("/api/v1/jobs", json=body)
    again = await api.http.post("/api/v1/jobs", json=body)
    assert first.status_code == 201
    assert again.status_code in (200, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await api.count() == 1


async def test_idempotency_key_with_another_body_is_a_conflict(api: Api) -> None:
    first = await api.http.post(
        "/api/v1/jobs", json={"job": ADD, "args": [1, 2], "idempotency_key": "k"}
    )
    other = await api.http.post(
        "/api/v1/jobs", json={"job": ADD, "args": [1, 3], "idempotency_key": "k"}
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "conflict"
    assert first.json()["id"] in other.json()["error"]["message"]
    assert await api.count() == 1


async def test_bulk_creates_every_job_in_order(api: Api) -> None:
    jobs: list[dict[str, Any]] = [{"job": ADD, "args": [i, i]} for i in range(50)]
    jobs.append({"job": ADD, "args": [0, 0], "delay_seconds": 30})
    response = await api.http.post("/api/v1/jobs/bulk", json={"jobs": jobs})
    assert response.status_code == 201
    ids = response.json()["ids"]
    assert len(ids) == 51
    assert await api.count() == 51
    assert await api.count("outbox") == 50
    assert await api.count("job_history") == 51
    tenth = (await api.http.get(f"/api/v1/jobs/{ids[10]}")).json()
    assert tenth["args"] == [10, 10]
    last = (await api.http.get(f"/api/v1/jobs/{ids[-1]}")).json()
    assert last["state"] == "Scheduled"


async def test_bulk_is_all_or_nothing(api: Api) -> None:
    jobs = [{"job": ADD, "args": [i, i]} for i in range(5)]
    jobs[3] = {"job": ADD, "args": [1, "two"]}
    response = await api.http.post("/api/v1/jobs/bulk", json={"jobs": jobs})
    assert response.status_code == 422
    assert "jobs[3]" in response.json()["error"]["message"]
    jobs[3] = {"job": "no.such.job"}
    response = await api.http.post("/api/v1/jobs/bulk", json={"jobs": jobs})
    assert response.status_code == 422
    assert "jobs[3]" in response.json()["error"]["message"]
    assert "no.such.job" in response.json()["error"]["message"]
    jobs[3] = {"job": ADD, "args": [1, 1], "queue": "Bad Queue"}
    response = await api.http.post("/api/v1/jobs/bulk", json={"jobs": jobs})
    assert response.status_code == 422
    assert "jobs[3]" in response.json()["error"]["message"]
    assert await api.count() == 0
    assert await api.count("outbox") == 0


async def test_bulk_count_is_capped(api: Api) -> None:
    jobs = [{"job": FAIL}] * 10_001
    response = await api.http.post("/api/v1/jobs/bulk", json={"jobs": jobs})
    assert response.status_code == 422
    assert "10000" in response.json()["error"]["message"]
    empty = await api.http.post("/api/v1/jobs/bulk", json={"jobs": []})
    assert empty.status_code == 422
    assert await api.count() == 0


async def test_bulk_with_idempotency_keys(api: Api) -> None:
    first = await api.http.post(
        "/api/v1/jobs", json={"job": ADD, "args": [1, 2], "idempotency_key": "a"}
    )
    jobs = [
        {"job": ADD, "args": [1, 2], "idempotency_key": "a"},
        {"job": ADD, "args": [5, 5], "idempotency_key": "b"},
        {"job": ADD, "args": [5, 5], "idempotency_key": "b"},
    ]
    response = await api.http.post("/api/v1/jobs/bulk", json={"jobs": jobs})
    assert response.status_code == 201
    ids = response.json()["ids"]
    assert ids[0] == first.json()["id"]
    assert ids[1] == ids[2]
    assert await api.count() == 2
    jobs[2] = {"job": ADD, "args": [6, 6], "idempotency_key": "a"}
    conflict = await api.http.post("/api/v1/jobs/bulk", json={"jobs": jobs})
    assert conflict.status_code == 409
    assert "jobs[2]" in conflict.json()["error"]["message"]
    assert await api.count() == 2


async def test_concurrent_requests_with_one_idempotency_key_make_one_job(api: Api) -> None:
    body = {"job": ADD, "args": [4, 4], "idempotency_key": "race"}
    responses = await asyncio.gather(*(api.http.post("/api/v1/jobs", json=body) for _ in range(8)))
    assert {r.status_code for r in responses} <= {200, 201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await api.count() == 1
    assert await api.count("outbox") == 1


async def test_trace_context_of_the_request_travels_with_the_job(api: Api) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    response = await api.http.post(
        "/api/v1/jobs",
        json={"job": ADD, "args": [1, 2]},
        headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"},
    )
    job_id = response.json()["id"]
    (entry,) = await api.outbox_for(job_id)
    assert entry.headers["traceparent"].split("-")[1] == trace_id
    async with api.runtime.engine.connect() as conn:
        row = await store.get_job(conn, uuid.UUID(job_id))
    assert row.trace_context["traceparent"].split("-")[1] == trace_id
