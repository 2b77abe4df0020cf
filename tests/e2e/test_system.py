"""End to end: real API, worker and scheduler processes driven through the HTTP API."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import Client, JobCall
from orchestrator.errors import ApiError, JobFailedError
from tests import worker_jobs
from tests.support.system import ROOT, System

pytestmark = pytest.mark.e2e


@pytest.fixture
def system(database_url: str, amqp_url: str, tmp_path: Path) -> Iterator[System]:
    running = System(
        database_url=database_url, jobs="tests.worker_jobs", amqp_url=amqp_url, log_dir=tmp_path
    )
    try:
        running.start("api", "api")
        running.start("worker", "worker", "--queues", "critical,default", "--concurrency", "4")
        running.start("scheduler", "scheduler")
        running.wait_for_api()
        running.wait_for_catalog("tests.add")
        yield running
    finally:
        running.stop_all()


def test_jobs_run_through_every_role(system: System) -> None:
    with Client(system.api_url) as client:
        job_id = client.enqueue(worker_jobs.add.call(2, 3))
        assert client.wait(job_id, timeout=20) == 5
        job = client.get(job_id)
        assert [h["state"] for h in job["history"]] == ["Enqueued", "Processing", "Succeeded"]
        assert job["attempt"] == 1

        ids = client.enqueue_many([worker_jobs.add.call(i, i) for i in range(20)])
        assert [client.wait(i, timeout=20) for i in ids] == [2 * i for i in range(20)]

        context_job = client.enqueue(JobCall.named("tests.whoami"))
        result = client.wait(context_job, timeout=20)
        assert result["job_id"] == context_job and result["attempt"] == 1


def test_failed_job_is_visible_and_can_be_requeued(system: System) -> None:
    with Client(system.api_url) as client:
        job_id = client.enqueue(worker_jobs.boom.call("bad input"))
        with pytest.raises(JobFailedError) as failed:
            client.wait(job_id, timeout=20)
        assert failed.value.job["error"]["type"] == "builtins.ValueError"
        assert "bad input" in failed.value.job["error"]["traceback"]
        assert client.requeue(job_id)["state"] == "Enqueued"
        with pytest.raises(JobFailedError):
            client.wait(job_id, timeout=20)
        job = client.get(job_id)
        assert job["attempt"] == 2
        assert [h["state"] for h in job["history"]] == [
            "Enqueued",
            "Processing",
            "Failed",
            "Enqueued",
            "Processing",
            "Failed",
        ]
        with pytest.raises(ApiError) as conflict:
            client.requeue(client.enqueue(worker_jobs.sleep.call(1.0), queue="other"))
        assert conflict.value.status == 409


def test_deleted_enqueued_job_never_runs(system: System, tmp_path: Path) -> None:
    marks = tmp_path / "marks.txt"
    with Client(system.api_url) as client:
        # "other" is a queue no worker consumes, so the job stays Enqueued until deleted.
        job_id = client.enqueue(worker_jobs.record.call(str(marks), "x"), queue="other")
        assert client.delete(job_id)["state"] == "Deleted"
        assert client.delete(job_id)["state"] == "Deleted"
        with pytest.raises(JobFailedError):
            client.wait(job_id, timeout=5)
    assert not marks.exists()


def test_stats_and_servers_show_the_running_system(system: System) -> None:
    with Client(system.api_url) as client:
        client.wait(client.enqueue(worker_jobs.add.call(1, 1)), timeout=20)
        stats = client.stats()
        assert stats["states"]["Succeeded"] >= 1
        queues = {q["name"]: q for q in stats["queues"]}
        assert queues["default"]["consumers"] >= 1
    import httpx

    servers = httpx.get(f"{system.api_url}/api/v1/servers").json()["items"]
    assert {s["role"] for s in servers} >= {"api", "worker", "scheduler"}
    worker = next(s for s in servers if s["role"] == "worker")
    assert worker["queues"] == ["critical", "default"] and worker["concurrency"] == 4


def test_dev_refuses_to_start_without_rabbitmq(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator_cli", "dev"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "ORCHESTRATOR_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
            "ORCHESTRATOR_DATABASE_URL": f"sqlite:///{tmp_path}/dev.db",
        },
    )
    assert result.returncode == 1
    assert "RabbitMQ is not reachable" in result.stderr
    assert "rabbitmq-server" in result.stderr
