"""Reading, listing, deleting and requeueing jobs; stats, catalog and servers."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import servers
from orchestrator.lifecycle import State
from tests.api.conftest import ADD, ECHO, FAIL, URGENT, Api


async def test_get_job_shows_history_oldest_first(api: Api) -> None:
    job_id = await api.enqueue()
    await api.move(job_id, State.PROCESSING, State.FAILED)
    job = (await api.http.get(f"/api/v1/jobs/{job_id}")).json()
    expected = {
        "id",
        "job",
        "args",
        "kwargs",
        "queue",
        "state",
        "attempt",
        "result",
        "error",
        "history",
        "created_at",
    }
    assert expected <= job.keys()
    assert job["state"] == "Failed"
    assert [h["state"] for h in job["history"]] == ["Enqueued", "Processing", "Failed"]
    assert all({"state", "at", "reason"} <= h.keys() for h in job["history"])


async def test_keyset_paging_visits_every_job_once(api: Api) -> None:
    response = await api.http.post(
        "/api/v1/jobs/bulk", json={"jobs": [{"job": ADD, "args": [i, 0]} for i in range(25)]}
    )
    created = set(response.json()["ids"])
    await api.enqueue(FAIL, queue="other")
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 10, "job": ADD}
        if cursor:
            params["cursor"] = cursor
        page = (await api.http.get("/api/v1/jobs", params=params)).json()
        pages += 1
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == created


async def test_list_filters_by_state_and_queue(api: Api) -> None:
    failed = await api.enqueue()
    await api.move(failed, State.FAILED)
    urgent = await api.enqueue(URGENT, args=[1])
    by_state = (await api.http.get("/api/v1/jobs", params={"state": "Failed"})).json()
    assert [item["id"] for item in by_state["items"]] == [failed]
    assert by_state["next_cursor"] is None
    by_queue = (await api.http.get("/api/v1/jobs", params={"queue": "critical"})).json()
    assert [item["id"] for item in by_queue["items"]] == [urgent]


async def test_delete_and_delete_again(api: Api) -> None:
    job_id = await api.enqueue()
    first = await api.http.delete(f"/api/v1/jobs/{job_id}")
    assert first.status_code == 200
    assert first.json() == {"id": job_id, "state": "Deleted"}
    again = await api.http.delete(f"/api/v1/jobs/{job_id}")
    assert again.status_code == 200
    assert again.json()["state"] == "Deleted"
    job = (await api.http.get(f"/api/v1/jobs/{job_id}")).json()
    assert [h["state"] for h in job["history"]] == ["Enqueued", "Deleted"]
    assert job["expires_at"] is not None


@pytest.mark.parametrize(
    "path",
    [(State.FAILED,), (State.PROCESSING, State.SUCCEEDED), (State.DELETED,)],
    ids=["failed", "succeeded", "deleted"],
)
async def test_requeue_runs_the_job_again(api: Api, path: tuple[State, ...]) -> None:
    job_id = await api.enqueue()
    await api.move(job_id, *path)
    before = len(await api.outbox_for(job_id))
    response = await api.http.post(f"/api/v1/jobs/{job_id}/requeue")
    assert response.status_code == 200
    assert response.json() == {"id": job_id, "state": "Enqueued"}
    job = (await api.http.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["state"] == "Enqueued"
    assert job["history"][-1]["state"] == "Enqueued"
    assert len(await api.outbox_for(job_id)) == before + 1


async def test_stats_counts_states_and_queues(api: Api) -> None:
    await api.enqueue()
    processing = await api.enqueue()
    await api.move(processing, State.PROCESSING)
    await api.enqueue(URGENT, args=[2])
    stats = (await api.http.get("/api/v1/stats")).json()
    assert set(stats["states"]) == {s.value for s in State}
    assert stats["states"]["Enqueued"] == 2
    assert stats["states"]["Processing"] == 1
    queues = {q["name"]: q for q in stats["queues"]}
    assert set(queues) == {"default", "critical"}
    assert queues["default"]["processing"] == 1
    # This fixture's broker is unreachable: the broker's figures are unknown, not zero.
    assert queues["default"]["ready"] is None
    assert queues["default"]["consumers"] is None


async def test_catalog_lists_the_registered_jobs(api: Api) -> None:
    items = (await api.http.get("/api/v1/catalog")).json()["items"]
    by_name = {item["name"]: item for item in items}
    assert {ADD, ECHO, FAIL, URGENT} <= by_name.keys()
    add = by_name[ADD]
    assert add["parameters"] == ["a", "b"]
    assert add["queue"] == "default"
    assert add["schema"]["properties"]["a"]["type"] == "integer"
    assert {"schema_hash", "options"} <= add.keys()


async def test_catalog_picks_up_registrations_stored_by_workers(api: Api) -> None:
    from orchestrator.catalog import Registration
    from orchestrator.db import db_now
    from orchestrator.store import registrations

    stored = Registration(
        name="elsewhere.resize",
        queue="low",
        parameters=["width"],
        json_schema={
            "type": "object",
            "properties": {"width": {"type": "integer"}},
            "required": ["width"],
            "additionalProperties": False,
        },
        schema_hash="h1",
        options={"retries": 2, "timeout": None},
    )
    async with api.runtime.engine.begin() as conn:
        await registrations.save(conn, [stored], await db_now(conn))
    # An unknown name makes the API look again: no restart needed.
    response = await api.http.post(
        "/api/v1/jobs", json={"job": "elsewhere.resize", "kwargs": {"width": 3}}
    )
    assert response.status_code == 201, response.text
    job = (await api.http.get(f"/api/v1/jobs/{response.json()['id']}")).json()
    assert (job["queue"], job["retries"]) == ("low", 2)
    bad = await api.http.post("/api/v1/jobs", json={"job": "elsewhere.resize", "kwargs": {}})
    assert bad.status_code == 422
    assert "width" in bad.json()["error"]["message"]


async def test_servers_lists_announced_instances(api: Api) -> None:
    info = servers.ServerInfo(role="worker", queues=["critical", "default"], concurrency=8)
    await servers.announce(api.runtime.engine, info)
    items = (await api.http.get("/api/v1/servers")).json()["items"]
    # The API announces itself too.
    assert sorted(item["role"] for item in items) == ["api", "worker"]
    server = next(item for item in items if item["role"] == "worker")
    assert server["id"] == info.id
    assert (server["role"], server["queues"], server["concurrency"]) == (
        "worker",
        ["critical", "default"],
        8,
    )
    assert {"host", "pid", "started_at", "heartbeat_at"} <= server.keys()
