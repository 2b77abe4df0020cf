"""The `orchestrator` command: `db upgrade`, and `dev` running every role in one command."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.system import READY_LIMIT_SECONDS, ROOT, free_port, remove_namespace

pytestmark = pytest.mark.e2e


def _env(tmp_path: Path, amqp_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        ORCHESTRATOR_DATABASE_URL=f"sqlite:///{tmp_path}/orchestrator.db",
        ORCHESTRATOR_AMQP_URL=amqp_url,
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def test_db_upgrade_creates_the_schema(tmp_path: Path, amqp_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator_cli", "db", "upgrade"],
        cwd=ROOT,
        env=_env(tmp_path, amqp_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    tables = {
        row[0]
        for row in sqlite3.connect(tmp_path / "orchestrator.db").execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    }
    assert {"jobs", "job_history", "outbox", "servers", "job_registrations"} <= tables


def test_dev_runs_every_role_until_stopped(tmp_path: Path, amqp_url: str) -> None:
    port = free_port()
    namespace = f"dev{os.getpid()}{int(time.time())}"
    env = _env(
        tmp_path,
        amqp_url,
        ORCHESTRATOR_API_PORT=str(port),
        ORCHESTRATOR_JOBS="examples.jobs",
        ORCHESTRATOR_BROKER_NAMESPACE=namespace,
        ORCHESTRATOR_WORKER_OPS_PORT="0",
        ORCHESTRATOR_SCHEDULER_OPS_PORT="0",
        ORCHESTRATOR_JANITOR_OPS_PORT="0",
    )
    dev = subprocess.Popen(
        [sys.executable, "-m", "orchestrator_cli", "dev"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        # No fixed start-up time: wait while `orchestrator dev` runs (it exits on a failure),
        # up to the harness's last-resort limit.
        deadline = time.monotonic() + READY_LIMIT_SECONDS

        def running() -> bool:
            assert dev.poll() is None, "orchestrator dev exited before serving a job"
            return time.monotonic() < deadline

        result = job_id = None
        while result is None and running():
            time.sleep(0.5)
            with contextlib.suppress(httpx.HTTPError):
                if job_id is None:
                    response = httpx.post(
                        f"{base}/api/v1/jobs",
                        json={"job": "examples.jobs.greet", "args": ["dev"]},
                        timeout=5,
                    )
                    # Until the worker has registered the example jobs the API answers 422.
                    if response.status_code == 201:
                        job_id = response.json()["id"]
                    continue
                job = httpx.get(f"{base}/api/v1/jobs/{job_id}", timeout=5).json()
                if job["state"] == "Succeeded":
                    result = job["result"]
        assert result == "Hello, dev!"
        roles: set[str] = set()
        while len(roles) < 4 and running():
            with contextlib.suppress(httpx.HTTPError):
                items = httpx.get(f"{base}/api/v1/servers", timeout=5).json()["items"]
                roles = {s["role"] for s in items}
            time.sleep(0.5)
        assert roles == {"api", "worker", "scheduler", "janitor"}
    finally:
        dev.send_signal(signal.SIGTERM)
        output = dev.communicate(timeout=60)[0].decode(errors="replace")

        remove_namespace(amqp_url, namespace)
    assert dev.returncode == 0, output
