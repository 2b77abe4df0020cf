"""Batches and continuations through the client and the real API app (PostgreSQL and SQLite);
the same through ``InlineClient`` is tests/unit/test_testing_inline.py."""

from __future__ import annotations

import pytest

from orchestrator import JobCall
from orchestrator.errors import ApiError
from orchestrator.lifecycle import State
from tests import jobs_for_tests as jobs
from tests.test_client_api import Running

S = State


async def test_batch_fires_its_continuation_once(api: Running) -> None:
    client = api.client
    made = await client.batch(
        [jobs.add.call(1, 2), jobs.add.call(3, 4), jobs.echo.call("x")],
        on_complete=jobs.echo.call("all done"),
    )
    first, second, third = made["job_ids"]
    done = made["continuation_id"]
    assert (await client.get(done))["state"] == "Awaiting"
    assert await client.get_batch(made["id"]) == {
        "id": made["id"],
        "total": 3,
        "succeeded": 0,
        "failed": 0,
        "deleted": 0,
        "pending": 3,
        "state": "running",
        "continuation_id": done,
        "completed_at": None,
    }
    await api.move(first, S.PROCESSING, S.SUCCEEDED)
    await api.move(second, S.PROCESSING, S.FAILED)
    assert (await client.get(done))["state"] == "Awaiting"
    await client.delete(third)
    assert (await client.get(done))["state"] == "Enqueued"
    progress = await client.get_batch(made["id"])
    assert (progress["succeeded"], progress["failed"], progress["deleted"]) == (1, 1, 1)
    assert progress["pending"] == 0 and progress["state"] == "completed"
    await client.requeue(second)  # runs again; the continuation does not
    await api.move(second, S.PROCESSING, S.SUCCEEDED)
    history = (await client.get(done))["history"]
    assert [h["state"] for h in history] == ["Awaiting", "Enqueued"]


async def test_batch_is_all_or_nothing(api: Running) -> None:
    before = await client_list(api)
    with pytest.raises(ApiError) as refused:
        await api.client.batch(
            [jobs.add.call(1, 2), JobCall.named("tests.jobs_for_tests.add", "x")]
        )
    assert refused.value.status == 422 and "jobs[1]" in refused.value.message
    with pytest.raises(ApiError) as unknown:
        await api.client.batch([jobs.add.call(1, 2)], on_complete=JobCall.named("nope"))
    assert unknown.value.status == 422 and "on_complete" in unknown.value.message
    assert await client_list(api) == before
    with pytest.raises(ApiError) as missing:
        await api.client.get_batch("8d1b3c9e-0000-4000-8000-000000000000")
    assert missing.value.status == 404


async def client_list(api: Running) -> int:
    return len((await api.client.list(limit=500))["items"])


@pytest.mark.parametrize(
    ("outcome", "on", "expected"),
    [
        (S.FAILED, "succeeded", "Awaiting"),
        (S.FAILED, "finished", "Enqueued"),
        (S.SUCCEEDED, "succeeded", "Enqueued"),
    ],
)
async def test_continue_on_through_the_api(
    api: Running, outcome: State, on: str, expected: str
) -> None:
    parent = await api.client.enqueue(jobs.add.call(1, 1))
    child = await api.client.continue_with(parent, jobs.echo.call("after"), on=on)  # type: ignore[arg-type]
    await api.move(parent, S.PROCESSING, outcome)
    assert (await api.client.get(child))["state"] == expected
    # A child of a parent that has already ended is handled at once.
    late = await api.client.continue_with(parent, jobs.echo.call("late"), on=on)  # type: ignore[arg-type]
    assert (await api.client.get(late))["state"] == expected


async def test_finished_child_of_a_deleted_parent_runs(api: Running) -> None:
    parent = await api.client.enqueue(jobs.add.call(1, 1), queue="other")
    waiting = await api.client.continue_with(parent, jobs.echo.call("f"), on="finished")
    doomed = await api.client.continue_with(parent, jobs.echo.call("s"))
    await api.client.delete(parent)
    assert (await api.client.get(waiting))["state"] == "Enqueued"
    deleted = await api.client.get(doomed)
    assert deleted["state"] == "Deleted" and parent in deleted["history"][-1]["reason"]
    late = await api.client.continue_with(parent, jobs.echo.call("late"), on="finished")
    assert (await api.client.get(late))["state"] == "Enqueued"
    with pytest.raises(ApiError) as conflict:
        await api.client.continue_with(parent, jobs.echo.call("never"))
    assert conflict.value.status == 409


