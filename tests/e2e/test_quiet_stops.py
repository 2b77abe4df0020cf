"""A SIGTERM ends every role quietly: exit code 0, and no traceback or asyncio warning in its log
(the ops server's CancelledError, aio-pika's pending tasks and never-awaited coroutines, a
reconnect attempt on the way out)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.system import System, free_port
from orchestrator import Client
from tests import worker_jobs

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
