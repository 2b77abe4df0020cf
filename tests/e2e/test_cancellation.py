"""Deleting a Processing job stops it within a second (pushed to its worker); it stays Deleted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator import Client
from tests import worker_jobs
from tests.e2e.test_system import system  # noqa: F401 - the fixture
from tests.support.system import System

pytestmark = pytest.mark.e2e


def _wait_for_line(path: Path, word: str, timeout: float = 10) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith(word):
                    return float(line.split()[1])
        time.sleep(0.02)
    raise AssertionError(f"{path} never said {word!r}")


def _delete_when_started(client: Client, job_id: str, marks: Path) -> float:
    _wait_for_line(marks, "started")
    deleted_at = time.time()
    assert client.delete(job_id)["state"] == "Deleted"
    return deleted_at


def test_deleting_a_running_sync_job_fires_its_token(system: System, tmp_path: Path) -> None:  # noqa: F811
    marks = tmp_path / "sync.txt"
    with Client(system.api_url) as client:
        job_id = client.enqueue(worker_jobs.until_cancelled.call(str(marks), 30.0))
        deleted_at = _delete_when_started(client, job_id, marks)
        cancelled_at = _wait_for_line(marks, "cancelled")
        assert cancelled_at - deleted_at < 1.0
        time.sleep(0.5)  # the job returned; its result must not overwrite the deletion
        job = client.get(job_id)
    assert job["state"] == "Deleted"
    assert job["result"] is None
    assert [h["state"] for h in job["history"]] == ["Enqueued", "Processing", "Deleted"]


def test_deleting_a_running_async_job_cancels_its_task(system: System, tmp_path: Path) -> None:  # noqa: F811
    marks = tmp_path / "async.txt"
    with Client(system.api_url) as client:
        job_id = client.enqueue(worker_jobs.async_forever.call(str(marks)))
        deleted_at = _delete_when_started(client, job_id, marks)
        cancelled_at = _wait_for_line(marks, "cancelled")
        assert cancelled_at - deleted_at < 1.0
        # The slot is free again: the next job runs at once.
        assert client.wait(client.enqueue(worker_jobs.add.call(1, 1)), timeout=10) == 2
        assert client.get(job_id)["state"] == "Deleted"
