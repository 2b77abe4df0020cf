"""``orchestrator.testing``: jobs run inline with production's validation and bookkeeping."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator import JobCall, JobContext, job
from orchestrator.catalog import Registration, validate_with_schema
from orchestrator.errors import (
    ConflictError,
    JobFailedError,
    JobNotFoundError,
    JobValidationError,
)
from orchestrator.testing import InlineClient, run_job
from tests import jobs_for_tests as jobs

calls: list[tuple[str, object]] = []


@job(name="inline.add")
def add(a: int, b: int) -> int:
    calls.append(("add", (a, b)))
    return a + b


@job(name="inline.boom", retries=0)
def boom(message: str) -> None:
    raise ValueError(message)


@job(name="inline.flaky", retries=2)
def flaky(failures: int, ctx: JobContext) -> dict[str, object]:
    calls.append(("flaky", ctx.attempt))
    if ctx.attempt <= failures:
        raise RuntimeError(f"attempt {ctx.attempt} failed")
    return {"attempt": ctx.attempt, "job_id": str(ctx.job_id)}


@job(name="inline.later")
async def later(when: datetime, ctx: JobContext) -> str:
    await asyncio.sleep(0)
    return f"{ctx.attempt}:{when.isoformat()}"


@job(name="inline.note")
def note(text: str) -> str:
    calls.append(("note", text))
    return text


@pytest.fixture
def client() -> Iterator[InlineClient]:
    calls.clear()
    with InlineClient([add, boom, flaky, later, note]) as inline:
        yield inline


def test_success_records_result_and_history(client: InlineClient) -> None:
    job_id = client.enqueue(add.call(2, b=3))
    assert client.wait(job_id) == 5
    view = client.get(job_id)
    assert view["state"] == "Succeeded"
    assert view["attempt"] == 1
    assert view["queue"] == "default"
    assert [h["state"] for h in view["history"]] == ["Enqueued", "Processing", "Succeeded"]


def test_failure_records_type_message_and_traceback(client: InlineClient) -> None:
    job_id = client.enqueue(boom.call("it broke"))
    view = client.get(job_id)
    assert view["state"] == "Failed"
    assert view["error"]["type"] == "builtins.ValueError"
    assert view["error"]["message"] == "it broke"
    assert "raise ValueError(message)" in view["error"]["traceback"]
    with pytest.raises(JobFailedError, match=r"ended Failed: builtins\.ValueError: it broke"):
        client.wait(job_id)


def test_retries_rerun_a_failing_job(client: InlineClient) -> None:
    recovered = client.enqueue(flaky.call(2))  # fails twice, its two retries suffice
    assert client.wait(recovered)["attempt"] == 3
    assert [h["state"] for h in client.get(recovered)["history"]] == [
        "Enqueued", "Processing", "Scheduled", "Processing", "Scheduled", "Processing",
        "Succeeded",
    ]
    calls.clear()
    exhausted = client.enqueue(flaky.call(5), retries=1)  # the option overrides @job's 2
    assert client.get(exhausted)["state"] == "Failed"
    assert client.get(exhausted)["error"]["message"] == "attempt 2 failed"
    assert calls == [("flaky", 1), ("flaky", 2)]


def test_context_is_injected_with_the_job_id(client: InlineClient) -> None:
    job_id = client.enqueue(flaky.call(0))
    assert client.wait(job_id) == {"attempt": 1, "job_id": job_id}


def test_async_job_runs_and_its_result_is_json(client: InlineClient) -> None:
    at = datetime(2030, 1, 1, 9, tzinfo=UTC)
    assert client.wait(client.enqueue(later.call(at))) == "1:2030-01-01T09:00:00+00:00"


async def test_async_job_from_a_running_event_loop(client: InlineClient) -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    assert client.wait(client.enqueue(later.call(at))).startswith("1:2030-01-01")
    assert run_job(later, at).startswith("1:")


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(["1", 2], {}), ([1], {}), ([1, 2], {"c": 3}), ([1, 2, 3], {}), ([True, 2], {})],
)
def test_bad_arguments_raise_the_apis_message(
    client: InlineClient, args: list[object], kwargs: dict[str, object]
) -> None:
    with pytest.raises(JobValidationError) as api:
        validate_with_schema(Registration.of(add), args, kwargs)
    with pytest.raises(JobValidationError) as inline:
        client.enqueue(JobCall("inline.add", args, kwargs))
    assert str(inline.value) == str(api.value)
    assert inline.value.field == api.value.field
    assert client.jobs == {}
    assert calls == []


def test_naive_datetime_is_refused_as_in_production(client: InlineClient) -> None:
    with pytest.raises(JobValidationError, match="'when'"):
        client.enqueue(JobCall.named("inline.later", "2030-01-01T00:00:00"))


def test_unknown_job_name(client: InlineClient) -> None:
    with pytest.raises(JobValidationError, match=r"unknown job .nope.: it is not in the catalog"):
        client.enqueue(JobCall.named("nope"))


def test_bulk_is_all_or_nothing_with_the_apis_prefix(client: InlineClient) -> None:
    with pytest.raises(JobValidationError, match=r"^jobs\[1\]: job 'inline.add'"):
        client.enqueue_many([add.call(1, 1), JobCall.named("inline.add", 1, "x")])
    assert client.jobs == {}
    ids = client.enqueue_many([add.call(1, 1), (note.call("hi"), {"queue": "low"})])
    assert [client.wait(i) for i in ids] == [2, "hi"]
    assert client.get(ids[1])["queue"] == "low"


def test_continuation_runs_after_its_parent_succeeded(client: InlineClient) -> None:
    parent = client.schedule(add.call(1, 1), delay=timedelta(hours=1))
    child = client.continue_with(parent, note.call("after"))
    grandchild = client.continue_with(child, note.call("last"))
    assert client.get(child)["state"] == "Awaiting"
    assert calls == []
    assert client.run_scheduled() == [parent]
    assert calls == [("add", (1, 1)), ("note", "after"), ("note", "last")]
    assert client.get(grandchild)["state"] == "Succeeded"


def test_continuation_conditions(client: InlineClient) -> None:
    failed = client.enqueue(boom.call("x"))
    on_success = client.continue_with(failed, note.call("never"))
    on_finish = client.continue_with(failed, note.call("anyway"), on="finished")
    assert client.get(on_success)["state"] == "Awaiting"  # a person may fix the parent
    assert client.wait(on_finish) == "anyway"
    client.delete(failed)
    assert client.get(on_success)["state"] == "Deleted"
    assert client.get(on_success)["history"][-1]["reason"] == f"Parent {failed} was deleted"


def test_continuation_of_an_unknown_parent_is_refused(client: InlineClient) -> None:
    with pytest.raises(JobValidationError, match="continue_after"):
        client.continue_with(uuid.uuid4(), note.call("x"))


def test_scheduled_jobs_wait_for_run_scheduled(client: InlineClient) -> None:
    soon = client.schedule(note.call("soon"), delay=timedelta(minutes=1))
    far = client.schedule(note.call("far"), run_at=datetime(2100, 1, 1, tzinfo=UTC))
    assert client.get(soon)["state"] == "Scheduled"
    with pytest.raises(TimeoutError, match="is Scheduled"):
        client.wait(soon)
    assert client.run_scheduled(until=datetime.now(UTC) + timedelta(minutes=5)) == [soon]
    assert client.wait(soon) == "soon"
    assert client.get(far)["state"] == "Scheduled"


def test_delete_and_requeue(client: InlineClient) -> None:
    scheduled = client.schedule(note.call("x"), delay=60)
    assert client.delete(scheduled)["state"] == "Deleted"
    assert client.delete(scheduled)["state"] == "Deleted"  # deleting again changes nothing
    assert client.run_scheduled() == []
    assert client.requeue(scheduled)["state"] == "Enqueued"
    assert client.wait(scheduled) == "x"
    with pytest.raises(JobNotFoundError):
        client.requeue(uuid.uuid4())


def test_requeue_gives_a_fresh_retry_budget(client: InlineClient) -> None:
    job_id = client.enqueue(flaky.call(2), retries=0)
    assert client.get(job_id)["state"] == "Failed"
    client.requeue(job_id)  # attempt 2 fails again, retries=0 still applies
    client.requeue(job_id)
    assert client.wait(job_id)["attempt"] == 3


def test_idempotency_key(client: InlineClient) -> None:
    first = client.enqueue(add.call(1, 2), idempotency_key="k")
    assert client.enqueue(add.call(1, 2), idempotency_key="k") == first
    assert len(client.jobs) == 1
    with pytest.raises(ConflictError, match=f"job {first}"):
        client.enqueue(add.call(1, 3), idempotency_key="k")


def test_options_are_checked_like_the_client(client: InlineClient) -> None:
    with pytest.raises(TypeError, match=r"add\.call\(\.\.\.\)"):
        client.enqueue(add)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        client.schedule(add.call(1, 2), run_at=datetime(2030, 1, 1))


def test_run_job_helper() -> None:
    assert run_job(add, 20, b=22) == 42
    with pytest.raises(ValueError, match="direct"):
        run_job(boom, "direct")
    with pytest.raises(JobValidationError, match="argument 'b'"):
        run_job(add, 1, "2")


def test_list_filters(client: InlineClient) -> None:
    ok = client.enqueue(add.call(1, 1))
    bad = client.enqueue(boom.call("x"))
    assert [j["id"] for j in client.list()["items"]] == [bad, ok]
    assert [j["id"] for j in client.list(state="Failed")["items"]] == [bad]
    assert [j["id"] for j in client.list(job="inline.add")["items"]] == [ok]


def test_inline_batch() -> None:
    client = InlineClient([jobs.add, jobs.echo, jobs.fail])
    made = client.batch([jobs.add.call(1, 2), jobs.fail.call()], on_complete=jobs.echo.call("z"))
    done = client.get(made["continuation_id"])
    assert done["state"] == "Succeeded" and done["result"] == "z"
    assert [client.get(i)["state"] for i in made["job_ids"]] == ["Succeeded", "Failed"]
    client.requeue(made["job_ids"][1])
    assert len(client.get(made["continuation_id"])["history"]) == 4  # ran once
    with pytest.raises(JobValidationError):
        client.batch([jobs.add.call(1, 2)], on_complete=jobs.add.call("x", 1))
