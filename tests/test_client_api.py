"""The client against the real API app, in-process, on PostgreSQL and SQLite (no worker runs)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orchestrator import AsyncClient, JobCall, composition, store
from orchestrator.db import db_now
from orchestrator.errors import ApiError, JobFailedError, JobValidationError
from orchestrator.lifecycle import Change, State
from orchestrator.settings import Settings
from orchestrator.testing import InlineClient
from orchestrator_api.app import create_app
from tests import jobs_for_tests as jobs

#: Nothing listens there; the API serves anyway and leaves the messages in its outbox.
DOWN_AMQP_URL = "amqp://guest:guest@127.0.0.1:1/"


@dataclass
class Running:
    app: FastAPI
    client: AsyncClient

    async def move(self, job_id: str, *path: State, **values: Any) -> None:
        """Walk a job through states with the state machine, as a worker would."""
        engine = self.app.state.runtime.engine
        async with engine.begin() as conn:
            current = State((await store.get_job(conn, uuid.UUID(job_id))).state)
            for target in path:
                change = Change("test", values=values if target is path[-1] else {})
                moved = await composition.transitions(timedelta(hours=1)).move(
                    conn, [uuid.UUID(job_id)], expected=[current], target=target, change=change,
                    now=await db_now(conn),
                )
                assert moved, f"could not move {current} -> {target}"
                current = target


@pytest.fixture
async def api(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Running]:
    settings = make_settings(database_url).model_copy(
        update={"jobs": ["tests.jobs_for_tests"], "amqp_url": DOWN_AMQP_URL}
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with AsyncClient("http://127.0.0.1", transport=transport) as client:
            yield Running(app, client)


async def test_enqueue_get_and_catalog(api: Running) -> None:
    job_id = await api.client.enqueue(jobs.add.call(1, b=2), queue="low", retries=1)
    view = await api.client.get(job_id)
    assert (view["job"], view["args"], view["kwargs"]) == (jobs.add.name, [1], {"b": 2})
    assert (view["state"], view["queue"], view["retries"]) == ("Enqueued", "low", 1)
    assert [h["state"] for h in view["history"]] == ["Enqueued"]
    names = [item["name"] for item in (await api.client.catalog())["items"]]
    assert "tests.jobs_for_tests.add" in names
    assert (await api.client.stats())["states"]["Enqueued"] == 1


async def test_bad_arguments_are_the_same_error_as_inline(api: Running) -> None:
    inline = InlineClient([jobs.add, jobs.echo])
    for call in (
        JobCall.named("tests.jobs_for_tests.add", 1, "2"),
        JobCall.named("tests.jobs_for_tests.add", 1),
        JobCall.named("tests.jobs_for_tests.echo", "x", when="2030-01-01T00:00:00"),
        JobCall.named("tests.jobs_for_tests.nope"),
    ):
        with pytest.raises(ApiError) as remote:
            await api.client.enqueue(call)
        with pytest.raises(JobValidationError) as local:
            inline.enqueue(call)
        assert (remote.value.status, remote.value.code) == (422, "invalid_job")
        assert remote.value.message == str(local.value)
    assert (await api.client.list())["items"] == []


async def test_list_pages_and_iterate(api: Running) -> None:
    ids = [await api.client.enqueue(jobs.add.call(i, i)) for i in range(5)]
    page = await api.client.list(limit=2)
    assert len(page["items"]) == 2
    assert page["next_cursor"] is not None
    assert [j["id"] async for j in api.client.iter_jobs(page_size=2)] == ids[::-1]
    failed = await api.client.enqueue(jobs.fail.call())
    await api.move(failed, State.PROCESSING, State.FAILED)
    assert [j["id"] async for j in api.client.iter_jobs(state="Failed")] == [failed]


async def test_delete_and_requeue(api: Running) -> None:
    job_id = await api.client.enqueue(jobs.echo.call("x"))
    with pytest.raises(ApiError) as conflict:
        await api.client.requeue(job_id)
    assert conflict.value.status == 409
    assert (await api.client.delete(job_id))["state"] == "Deleted"
    assert (await api.client.delete(job_id))["state"] == "Deleted"
    assert (await api.client.requeue(job_id))["state"] == "Enqueued"
    with pytest.raises(ApiError) as missing:
        await api.client.get(uuid.uuid4())
    assert missing.value.status == 404


async def test_idempotency_key(api: Running) -> None:
    first = await api.client.enqueue(jobs.add.call(1, 2), idempotency_key="order-7")
    assert await api.client.enqueue(jobs.add.call(1, 2), idempotency_key="order-7") == first
    with pytest.raises(ApiError) as conflict:
        await api.client.enqueue(jobs.add.call(1, 3), idempotency_key="order-7")
    assert conflict.value.status == 409
    assert first in conflict.value.message


async def test_schedule_continue_and_bulk(api: Running) -> None:
    delayed = await api.client.schedule(jobs.echo.call("later"), delay=timedelta(hours=1))
    at = await api.client.schedule(jobs.echo.call("at"), run_at=datetime(2100, 1, 1, tzinfo=UTC))
    child = await api.client.continue_with(delayed, jobs.echo.call("after"))
    assert [(await api.client.get(i))["state"] for i in (delayed, at, child)] == [
        "Scheduled", "Scheduled", "Awaiting"
    ]
    ids = await api.client.enqueue_many(
        [jobs.add.call(1, 1), (jobs.urgent.call(3), {"queue": "other"})]
    )
    assert [(await api.client.get(i))["queue"] for i in ids] == ["default", "other"]
    with pytest.raises(ApiError, match=r"jobs\[1\]"):
        await api.client.enqueue_many([jobs.add.call(1, 1), JobCall.named(jobs.add.name, "x")])
    assert len([j async for j in api.client.iter_jobs()]) == 5


async def test_wait(api: Running) -> None:
    done = await api.client.enqueue(jobs.add.call(2, 2))
    await api.move(done, State.PROCESSING, State.SUCCEEDED, result=4)
    assert await api.client.wait(done, timeout=5, poll_interval=0.01) == 4
    failed = await api.client.enqueue(jobs.fail.call())
    await api.move(
        failed, State.PROCESSING, State.FAILED,
        error_type="builtins.RuntimeError", error_message="this job always fails",
    )
    with pytest.raises(JobFailedError, match="this job always fails"):
        await api.client.wait(failed, timeout=5, poll_interval=0.01)
    deleted = await api.client.enqueue(jobs.add.call(1, 1))
    await api.client.delete(deleted)
    with pytest.raises(JobFailedError, match="ended Deleted"):
        await api.client.wait(deleted, timeout=5, poll_interval=0.01)
    waiting = await api.client.enqueue(jobs.add.call(1, 1))
    with pytest.raises(TimeoutError, match="still Enqueued"):
        await api.client.wait(waiting, timeout=0.1, poll_interval=0.02)
