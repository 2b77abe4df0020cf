"""What a developer watching the terminal sees of jobs that fail, from real processes.

A worker writes one WARNING line per failed attempt (with its retry delay), per timeout and per
final failure, naming the job's id and name; the janitor one per dead letter. With
``ORCHESTRATOR_LOG_FORMAT=json`` the same records carry the job as context fields and the
attempt, the delay and the reason as fields of their own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from orchestrator import Client
from orchestrator.errors import JobFailedError
from orchestrator.topology import Topology, declare_base, declare_work_queue
from tests.retries.jobs import always, flaky, sync_polite
from tests.support.system import System

pytestmark = pytest.mark.e2e

JOBS = "tests.retries.jobs"


@pytest.fixture
def system(postgres_url: str, amqp_url: str, tmp_path: Path) -> Iterator[System]:
    running = System(database_url=postgres_url, jobs=JOBS, amqp_url=amqp_url, log_dir=tmp_path)
    try:
        running.start("api", "api")
        # The defaults a developer has (console lines) on one queue, JSON on another.
        running.start("worker", "worker")
        running.start(
            "json-worker",
            "worker",
            ORCHESTRATOR_WORKER_QUEUES="low",
            ORCHESTRATOR_LOG_FORMAT="json",
        )
        running.start("janitor", "janitor", ORCHESTRATOR_LOG_FORMAT="json")
        running.wait_for_api()
        running.wait_for_catalog(flaky.spec.name)
        yield running
    finally:
        running.stop_all()


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if " WARNING orchestrator.jobs.outcomes" in line]


def _records(text: str, logger: str) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in text.splitlines() if line.startswith("{"))
    return [r for r in lines if r["logger"] == logger]


def _wait_failed(client: Client, job_id: str) -> None:
    with pytest.raises(JobFailedError):
        client.wait(job_id, timeout=120)


def test_failed_attempts_retries_timeouts_and_final_failures_get_a_line_each(
    system: System,
) -> None:
    with Client(system.api_url) as client:
        recovers = client.enqueue(flaky.call())  # fails once, then succeeds
        gives_up = client.enqueue(always.call("boom"), retries=1)
        times_out = client.enqueue(sync_polite.call(30))  # times out once, then succeeds
        json_gives_up = client.enqueue(always.call("bang"), retries=1, queue="low")
        assert client.wait(recovers, timeout=120) == 2
        _wait_failed(client, gives_up)
        assert client.wait(times_out, timeout=120) == "second attempt"
        _wait_failed(client, json_gives_up)
    system.stop("worker")
    system.stop("json-worker")
    lines = _warnings(system.log_of("worker"))

    def of(job_id: str) -> list[str]:
        return [line.split(" WARNING orchestrator.jobs.outcomes ", 1)[1] for line in lines
                if f"job {job_id} " in line]  # fmt: skip

    assert len(lines) == 4, lines
    assert [m.split("] ", 1)[1] for m in of(recovers)] == [
        f"job {recovers} retry.flaky failed (attempt 1 of 3): "
        "RuntimeError: flaky failure on attempt 1; retry in 1 s"
    ]
    assert [m.split("] ", 1)[1] for m in of(gives_up)] == [
        f"job {gives_up} retry.always failed (attempt 1 of 2): RuntimeError: boom; retry in 1 s",
        f"job {gives_up} retry.always failed for good after 2 attempts: RuntimeError: boom",
    ]
    assert [m.split("] ", 1)[1] for m in of(times_out)] == [
        f"job {times_out} timeout.sync_polite timed out after 0.5 s (attempt 1 of 2); retry in 1 s"
    ]

    records = _records(system.log_of("json-worker"), "orchestrator.jobs.outcomes")
    assert [(r["level"], r["job_id"], r["job_name"]) for r in records] == [
        ("WARNING", json_gives_up, "retry.always")
    ] * 2
    first, last = records
    assert (first["attempt"], first["attempts"], first["state"]) == (1, 2, "Scheduled")
    assert first["retry_in_seconds"] == 1 and first["error_type"] == "builtins.RuntimeError"
    assert (last["attempt"], last["state"], last["retry_in_seconds"]) == (2, "Failed", None)
    assert last["message"].endswith("failed for good after 2 attempts: RuntimeError: bang")


async def _reject_one(system: System, queue_name: str) -> None:
    """Take the one message waiting in the queue and reject it, as a broken consumer would."""
    connection = await aio_pika.connect(system.amqp_url)
    try:
        channel = await connection.channel()
        topology = Topology(system.namespace)
        await declare_base(channel, topology)
        queue = await declare_work_queue(channel, topology, queue_name)
        for _ in range(600):
            message = await queue.get(no_ack=False, fail=False)
            if message is not None:
                await message.reject(requeue=False)
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no message arrived in {queue_name}")
    finally:
        await connection.close()


def test_a_dead_letter_gets_a_line_naming_its_job(system: System) -> None:
    with Client(system.api_url) as client:
        # No worker serves "other": its message waits there until rejected.
        job_id = client.enqueue(always.call("never run"), queue="other")
        asyncio.run(_reject_one(system, "other"))
        _wait_failed(client, job_id)
    system.stop("janitor")
    records = _records(system.log_of("janitor"), "orchestrator_janitor.drain")
    named = [r for r in records if r["job_id"] == job_id]
    assert len(named) == 1, records
    (line,) = named
    assert line["level"] == "WARNING" and line["job_name"] == "retry.always"
    assert line["reason"] == "rejected" and line["job_failed"] is True
    assert line["message"].startswith(f"dead letter: job {job_id} retry.always (reason rejected)")
