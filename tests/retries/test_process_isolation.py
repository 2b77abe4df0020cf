"""Process mode (``@job(isolation="process")``): a sync job runs in a child process; past its
deadline plus grace the child is killed and the run fails with JobTimeoutError under the retry
policy; inside the child ``ctx.cancelled`` is set at the deadline and on DELETE; results and
exceptions (type, message, traceback) come back to the worker."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from orchestrator_worker.worker import Worker
from tests.retries.conftest import CATALOG, enqueue, new_job, read, wait_for

TIMEOUT = "orchestrator.errors.JobTimeoutError"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def lines(notes: Path, count: int, timeout: float = 20) -> list[str]:
    for _ in range(int(timeout / 0.05)):
        found = notes.read_text().splitlines() if notes.exists() else []
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{notes} has fewer than {count} lines")


async def test_a_process_job_returns_its_result_from_another_process(start_worker, postgres_url):
    settings = await start_worker(postgres_url)
    [job_id] = await enqueue(settings, [new_job("process.echo", 7)])
    row, _ = await wait_for(settings, job_id, {"Succeeded", "Failed"})
    assert row.state == "Succeeded", row.error_traceback
    assert row.result["value"] == 7
    assert row.result["pid"] != os.getpid()


async def test_a_process_job_past_its_deadline_is_killed_and_retried(
    start_worker, postgres_url, tmp_path
):
    settings = await start_worker(postgres_url, timeout_grace_seconds=0.5)
    notes = tmp_path / "notes"
    [job_id] = await enqueue(settings, [new_job("process.stubborn", str(notes))])
    row, history = await wait_for(settings, job_id, {"Scheduled", "Failed"})
    assert (row.state, row.error_type) == ("Scheduled", TIMEOUT)
    assert history[-1].reason == "Retry attempt 1 of 1: the job ran past its timeout of 0.5 s"
    first_pid = int((await lines(notes, 1))[0].split()[2])
    assert not alive(first_pid)  # killed (and reaped) before the retry was recorded
    row, history = await wait_for(settings, job_id, {"Failed"})
    assert (row.attempt, row.error_type) == (2, TIMEOUT)
    first, second = await lines(notes, 2)
    assert first.startswith("start 1 ") and second.startswith("start 2 ")
    second_pid = int(second.split()[2])
    assert second_pid != first_pid and not alive(second_pid)


async def test_a_cooperative_process_job_sees_its_token_at_the_deadline(
    start_worker, postgres_url, tmp_path
):
    settings = await start_worker(postgres_url, timeout_grace_seconds=5)
    notes = tmp_path / "notes"
    [job_id] = await enqueue(settings, [new_job("process.polite", str(notes))])
    row, _ = await wait_for(settings, job_id, {"Failed", "Succeeded"})
    assert (row.state, row.error_type) == ("Failed", TIMEOUT)
    start, cancelled = await lines(notes, 2)
    assert cancelled == "cancelled"  # its ctx.cancelled fired inside the child; it returned
    assert not alive(int(start.split()[2]))


async def test_delete_sets_the_token_inside_the_child(
    start_worker, start_api, postgres_url, tmp_path
):
    settings = await start_worker(postgres_url)
    notes = tmp_path / "notes"
    [job_id] = await enqueue(settings, [new_job("process.polite_no_timeout", str(notes))])
    [start] = await lines(notes, 1)
    async with start_api(postgres_url) as api:
        response = await api.http.delete(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
    assert (await lines(notes, 2, timeout=5))[1] == "cancelled"
    for _ in range(100):
        if not alive(int(start.split()[2])):
            break
        await asyncio.sleep(0.05)
    assert not alive(int(start.split()[2]))
    row, _ = await wait_for(settings, job_id, {"Deleted"})
    assert row.result is None  # what it returned afterwards did not overwrite Deleted


async def test_an_exception_comes_back_with_its_type_and_traceback(start_worker, postgres_url):
    settings = await start_worker(postgres_url)
    [job_id] = await enqueue(settings, [new_job("process.raises", "missing")])
    row, history = await wait_for(settings, job_id, {"Failed", "Scheduled"})
    # Failed at once: no_retry_on=(KeyError,) matched the exception carried back from the child.
    assert (row.state, row.attempt, row.error_type) == ("Failed", 1, "builtins.KeyError")
    assert row.error_message == "'missing'"
    assert "in process_raises" in row.error_traceback
    assert "raise KeyError(key)" in row.error_traceback
    assert len(history) == 3


async def test_shutdown_kills_the_child_and_hands_the_job_back(
    make_settings, postgres_url, tmp_path
):
    settings = make_settings(postgres_url, worker_ops_port=0, worker_concurrency=2)
    worker = Worker(settings, CATALOG, shutdown_grace=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 20)
    notes = tmp_path / "notes"
    [job_id] = await enqueue(settings, [new_job("process.sleeper", str(notes))])
    [start] = await lines(notes, 1)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert not alive(int(start.split()[2]))  # killed before the worker returned
    row, history = await read(settings, job_id)
    assert (row.state, row.retries_used) == ("Enqueued", 0)  # handed back, no retry spent
    assert [h.state for h in history] == ["Enqueued", "Processing", "Enqueued"]
