"""Real processes: a kill -9'd worker's job runs again elsewhere; a job that keeps killing its
worker ends Failed ("worker lost") after the configured number of losses."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.system import System
from orchestrator import Client, JobCall

pytestmark = pytest.mark.e2e
LEASE = 2.0


@pytest.fixture
def system(postgres_url: str, amqp_url: str, tmp_path: Path) -> Iterator[System]:
    running = System(
        database_url=postgres_url,
        jobs="tests.recovery.recovery_jobs",
        amqp_url=amqp_url,
        log_dir=tmp_path,
        extra_env={
            "ORCHESTRATOR_LEASE_SECONDS": str(LEASE),
            "ORCHESTRATOR_HEARTBEAT_SECONDS": "0.5",
            "ORCHESTRATOR_LEASE_EXPIRY_INTERVAL_SECONDS": "0.2",
        },
    )
    try:
        running.start("api", "api")
        running.start("scheduler", "scheduler")
        running.wait_for_api()
        yield running
    finally:
        running.stop_all()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _wait(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_workers_job_runs_again_on_another(system: System, tmp_path: Path) -> None:
    marks = tmp_path / "marks.txt"
    system.start("worker-1", "worker", "--concurrency", "2")
    system.wait_for_catalog("tests.stall_first_run")
    with Client(system.api_url) as client:
        job_id = client.enqueue(JobCall.named("tests.stall_first_run", str(marks)))
        _wait(lambda: len(_lines(marks)) == 1, 60, "the first run to start")
        killed_at = time.monotonic()
        system.stop("worker-1", signal.SIGKILL)
        system.start("worker-2", "worker", "--concurrency", "2")
        assert client.wait(job_id, timeout=60) == 2
        recovered_in = time.monotonic() - killed_at
        job = client.get(job_id)
    assert [h["state"] for h in job["history"]] == [
        "Enqueued",
        "Processing",
        "Enqueued",
        "Processing",
        "Succeeded",
    ]
    assert "Lease expired" in job["history"][2]["reason"]
    assert [line.split()[0] for line in _lines(marks)] == ["1", "2"]
    assert recovered_in < LEASE + 30  # lease + a tick + a worker start-up on a busy host


def test_a_job_that_keeps_killing_its_worker_ends_failed(system: System, tmp_path: Path) -> None:
    marks = tmp_path / "marks.txt"
    system.start("worker", "worker")
    system.wait_for_catalog("tests.kill_own_worker")
    with Client(system.api_url) as client:
        job_id = client.enqueue(JobCall.named("tests.kill_own_worker", str(marks)))
        deadline = time.monotonic() + 90
        while client.get(job_id)["state"] != "Failed":
            assert time.monotonic() < deadline, "the job never failed"
            if system.processes["worker"].poll() is not None:  # a supervisor restarts it
                system.stop("worker")
                system.start("worker", "worker")
            time.sleep(0.2)
        job = client.get(job_id)
    assert job["error"]["type"] == "WorkerLost"
    assert job["history"][-1]["reason"].startswith("Worker lost")
    assert [line.split()[0] for line in _lines(marks)] == ["1", "2", "3"]
    assert job["attempt"] == 3
