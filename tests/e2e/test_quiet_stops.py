"""A SIGTERM ends every role quietly: exit code 0, and no traceback or asyncio warning in its log
(the ops server's CancelledError, aio-pika's pending tasks and never-awaited coroutines, a
reconnect attempt on the way out)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator import Client, JobCall
from orchestrator.signals import SAME_PERSON_SECONDS
from tests import worker_jobs
from tests.faults.harness import wait_until
from tests.faults.overlaps import attempts
from tests.faults.scenario import job_states
from tests.support.system import ROOT, System, free_port, remove_namespace

pytestmark = pytest.mark.e2e

#: What a quiet stop never prints.
NOISE = ("Traceback", "CancelledError", "Task was destroyed", "was never awaited", "Reconnecting")
ROLES = ("api", "worker", "scheduler", "janitor")
OPS_PORT = {
    "worker": "ORCHESTRATOR_WORKER_OPS_PORT",
    "scheduler": "ORCHESTRATOR_SCHEDULER_OPS_PORT",
    "janitor": "ORCHESTRATOR_JANITOR_OPS_PORT",
}


def noise_in(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(word in line for word in NOISE)]


@pytest.fixture
def system(postgres_url: str, amqp_url: str, tmp_path: Path) -> Iterator[System]:
    running = System(
        database_url=postgres_url,
        jobs="tests.worker_jobs",
        amqp_url=amqp_url,
        log_dir=tmp_path,
        # Everything the roles say, not only warnings: a quiet stop says nothing alarming.
        extra_env={"ORCHESTRATOR_LOG_LEVEL": "INFO"},
    )
    try:
        yield running
    finally:
        running.stop_all()


def ready_on(port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    return False


@pytest.mark.timeout(900)
def test_sigterm_stops_every_role_quietly(system: System) -> None:
    ports = {role: free_port() for role in OPS_PORT}
    for role in ROLES:
        env = {OPS_PORT[role]: str(ports[role])} if role in OPS_PORT else {}
        system.start(role, role, **env)
    system.wait_for_api()
    for role, port in ports.items():
        system.wait_until_ready(f"the {role} to be ready", lambda p=port: ready_on(p), [role])
    system.wait_for_catalog("tests.add")
    with Client(system.api_url) as client:  # some work first: every role has done its part
        ids = client.enqueue_many([worker_jobs.add.call(i, 1) for i in range(10)])
        assert [client.wait(job_id, timeout=120) for job_id in ids] == list(range(1, 11))

    codes = {role: system.stop(role, signal.SIGTERM, timeout=120) for role in ROLES}
    logs = {role: system.log_of(role) for role in ROLES}
    assert {role: noise_in(log) for role, log in logs.items()} == {r: [] for r in ROLES}, logs
    assert codes == dict.fromkeys(ROLES, 0), logs


def start_dev(
    postgres_url: str, amqp_url: str, **env: str
) -> tuple[System, subprocess.Popen[bytes]]:
    """``orchestrator dev`` in a session of its own, as a terminal runs it: a Ctrl-C there is a
    SIGINT to the whole process group, supervisor and roles alike."""
    system = System(database_url=postgres_url, jobs="tests.faults.jobs", amqp_url=amqp_url)
    environment = system.env(ORCHESTRATOR_LOG_LEVEL="INFO", **env)
    dev = subprocess.Popen(
        [sys.executable, "-m", "orchestrator_cli", "dev"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return system, dev


def wait_for_roles(system: System, dev: subprocess.Popen[bytes]) -> None:
    def all_up() -> bool:
        assert dev.poll() is None, "orchestrator dev exited"
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            servers = httpx.get(f"{system.api_url}/api/v1/servers", timeout=2).json()["items"]
            return {s["role"] for s in servers} == set(ROLES)
        return False

    wait_until(all_up, 600, "every role of orchestrator dev registered", interval=0.5)


def ctrl_c(dev: subprocess.Popen[bytes]) -> None:
    os.killpg(dev.pid, signal.SIGINT)


@pytest.fixture
def dev_cleanup(amqp_url: str) -> Iterator[list[tuple[System, subprocess.Popen[bytes]]]]:
    started: list[tuple[System, subprocess.Popen[bytes]]] = []
    yield started
    for system, dev in started:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
        if dev.stdout is not None:
            dev.stdout.close()  # read line by line, it is not closed by communicate()
        remove_namespace(amqp_url, system.namespace)


@pytest.mark.timeout(900)
def test_ctrl_c_stops_orchestrator_dev_quietly_one_line_per_role(
    postgres_url: str, amqp_url: str, tmp_path: Path, dev_cleanup: list[Any]
) -> None:
    system, dev = start_dev(postgres_url, amqp_url)
    dev_cleanup.append((system, dev))
    wait_for_roles(system, dev)
    marks = tmp_path / "marks"
    marks.mkdir()
    with Client(system.api_url) as client:
        job_id = client.enqueue(JobCall.named("faults.marked", directory=str(marks)))
        assert client.wait(job_id, timeout=120) == "done"

    ctrl_c(dev)
    output = dev.communicate(timeout=300)[0].decode(errors="replace")
    assert noise_in(output) == [], output
    for role in ROLES:
        assert output.count(f"{role} stopped (exit 0)") == 1, output
    assert dev.returncode == 0, output


@pytest.mark.timeout(900)
def test_a_second_ctrl_c_stops_orchestrator_dev_at_once(
    postgres_url: str, amqp_url: str, tmp_path: Path, dev_cleanup: list[Any]
) -> None:
    # A grace period far longer than this test may take: only the second Ctrl-C ends it.
    system, dev = start_dev(
        postgres_url, amqp_url, ORCHESTRATOR_WORKER_SHUTDOWN_GRACE_SECONDS="3600"
    )
    dev_cleanup.append((system, dev))
    wait_for_roles(system, dev)
    marks = tmp_path / "marks"
    marks.mkdir()
    with Client(system.api_url) as client:  # a job that ignores the shutdown
        job_id = client.enqueue(JobCall.named("faults.marked", directory=str(marks), seconds=3600))
    wait_until(lambda: attempts(marks, job_id), 300, "the long job started")

    ctrl_c(dev)
    first = time.monotonic()
    # The other roles stop; the worker waits for its job, well past the echo window.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(_lines(dev)), daemon=True)
    reader.start()
    wait_until(lambda: sum("stopped (exit 0)" in x for x in lines) == 3, 300, "three roles stopped")
    assert dev.poll() is None and not any(x.startswith("worker stopped") for x in lines)
    # A second Ctrl-C sooner than this would be taken for the echo of the first.
    time.sleep(max(0.0, first + SAME_PERSON_SECONDS + 0.5 - time.monotonic()))
    ctrl_c(dev)
    dev.wait(timeout=300)
    reader.join(timeout=30)
    output = "".join(lines)
    assert "worker stopped (exit 0)" in output, output
    assert job_states(postgres_url)[job_id] == "Enqueued"  # handed back, to run again
    assert noise_in(output) == [], output
    assert dev.returncode == 0, output


def _lines(dev: subprocess.Popen[bytes]) -> Iterator[str]:
    assert dev.stdout is not None
    for raw in dev.stdout:
        yield raw.decode(errors="replace")
