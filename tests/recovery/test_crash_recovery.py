"""Real processes: a kill -9'd worker's jobs run again elsewhere; a job that keeps killing its
worker ends Failed ("worker lost") after the configured number of losses. Faults (a) and (g) of
docs/reliability.md: each test appends its figures to artifacts/faults.jsonl."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import Client, JobCall
from tests.faults.scenario import Outcome
from tests.support.system import System

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


STALLED = 4
QUEUED = 20


def test_a_killed_workers_job_runs_again_on_another(system: System, tmp_path: Path) -> None:
    """(a) kill -9 of a worker running 4 jobs, 20 more queued behind them."""
    system.start("worker-1", "worker", "--concurrency", str(STALLED))
    system.wait_for_catalog("tests.stall_first_run")
    stalled_marks = [tmp_path / f"stalled-{i}.txt" for i in range(STALLED)]
    queued_marks = [tmp_path / f"queued-{i}.txt" for i in range(QUEUED)]
    with Client(system.api_url) as client:
        stalled = [
            client.enqueue(JobCall.named("tests.stall_first_run", str(m))) for m in stalled_marks
        ]
        _wait(lambda: all(_lines(m) for m in stalled_marks), 60, "the first runs to start")
        queued = [client.enqueue(JobCall.named("tests.quick", str(m))) for m in queued_marks]
        killed_at = time.monotonic()
        system.stop("worker-1", signal.SIGKILL)
        system.start("worker-2", "worker", "--concurrency", str(STALLED))
        assert [client.wait(j, timeout=60) for j in stalled] == [2] * STALLED
        assert [client.wait(j, timeout=60) for j in queued] == [1] * QUEUED
        recovered_in = time.monotonic() - killed_at
        jobs = [client.get(j) for j in stalled]
    for job in jobs:
        assert [h["state"] for h in job["history"]] == [
            "Enqueued",
            "Processing",
            "Enqueued",
            "Processing",
            "Succeeded",
        ]
        assert "Lease expired" in job["history"][2]["reason"]
    assert all([line.split()[0] for line in _lines(m)] == ["1", "2"] for m in stalled_marks)
    # The queued jobs (prefetched by the killed worker or not) ran once each.
    assert all(len(_lines(m)) == 1 for m in queued_marks)
    assert recovered_in < LEASE + 30  # lease + a tick + a worker start-up on a busy host
    Outcome(
        scenario="a-kill-9",
        fault=f"kill -9 of a worker running {STALLED} jobs with {QUEUED} more queued; a new "
        f"worker started at once (lease {LEASE:g} s)",
        accepted=STALLED + QUEUED,
        completed=STALLED + QUEUED,
        lost=0,
        stuck=0,
        ran_twice=sum(1 for m in stalled_marks + queued_marks if len(_lines(m)) > 1),
        effect_twice=0,
        recovery_s=round(recovered_in, 1),
        extra={"rerun_necessarily": STALLED},
    ).report()


def test_a_job_that_keeps_killing_its_worker_ends_failed(system: System, tmp_path: Path) -> None:
    marks = tmp_path / "marks.txt"
    system.start("worker", "worker")
    system.wait_for_catalog("tests.kill_own_worker")
    with Client(system.api_url) as client:
        job_id = client.enqueue(JobCall.named("tests.kill_own_worker", str(marks)))
        enqueued_at = time.monotonic()
        deadline = enqueued_at + 90
        restarts = 0
        while client.get(job_id)["state"] != "Failed":
            assert time.monotonic() < deadline, "the job never failed"
            if system.processes["worker"].poll() is not None:  # a supervisor restarts it
                system.stop("worker")
                system.start("worker", "worker")
                restarts += 1
            time.sleep(0.2)
        failed_in = time.monotonic() - enqueued_at
        job = client.get(job_id)
    assert job["error"]["type"] == "WorkerLost"
    assert job["history"][-1]["reason"].startswith("Worker lost")
    assert [line.split()[0] for line in _lines(marks)] == ["1", "2", "3"]
    assert job["attempt"] == 3
    Outcome(
        scenario="g-always-crashes",
        fault="a job that kills its worker (SIGKILL of its own process) on every run; the "
        f"worker restarted each time as a supervisor would (lease {LEASE:g} s, limit 3)",
        accepted=1,
        completed=0,
        lost=0,
        stuck=0,
        ran_twice=1,  # three runs, by design: the limit of worker losses
        effect_twice=0,
        recovery_s=round(failed_in, 1),
        extra={"runs": len(_lines(marks)), "end_state": job["state"], "worker_restarts": restarts},
    ).report()
