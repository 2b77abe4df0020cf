"""`orchestrator dev` on a machine whose RabbitMQ is not running.

With ``rabbitmq-server`` on PATH it starts a private node under the project folder on the URL's
port, runs a job through it, and stops it with itself (Ctrl-C or SIGTERM) leaving no process of
the node behind. Without it, it says how to start one: the ``docker run`` line when ``docker`` is
on PATH, else the usual advice; and it never takes a port something else answers on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator_cli.private_broker import PINNED_IMAGE, STATE_FOLDER
from tests.support.system import READY_LIMIT_SECONDS, ROOT, free_port

pytestmark = pytest.mark.e2e

#: Where packages put rabbitmq-server; a test that wants it found puts these on PATH.
SBIN = "/usr/sbin:/usr/local/sbin"


def _env(project: Path, amqp_port: int, path: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        PATH=path,
        ORCHESTRATOR_DATABASE_URL=f"sqlite:///{project}/orchestrator.db",
        ORCHESTRATOR_AMQP_URL=f"amqp://guest:guest@127.0.0.1:{amqp_port}/",
        ORCHESTRATOR_JOBS="examples.jobs",
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def _dev(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    # Its own session, as in a terminal: a Ctrl-C goes to its whole process group.
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator_cli", "dev"],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _node_processes(home: Path) -> dict[int, str]:
    """Live processes started for the node (its script, beam, helpers, epmd): the ones whose
    environment has the node's private HOME."""
    marker = f"HOME={home}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                status = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if status != "Z":
                    found[int(entry.name)] = (entry / "comm").read_text().strip()
    return found


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


def _greet_through(api: str, dev: subprocess.Popen[bytes], log: Path) -> str:
    """Enqueue examples.jobs.greet through the API `dev` serves and wait for its result, for as
    long as `dev` runs (it exits on a failure), up to the harness's last-resort limit."""
    deadline = time.monotonic() + READY_LIMIT_SECONDS
    job_id = None
    while time.monotonic() < deadline:
        assert dev.poll() is None, f"orchestrator dev exited:\n{log.read_text(errors='replace')}"
        with contextlib.suppress(httpx.HTTPError):
            if job_id is None:
                response = httpx.post(
                    f"{api}/api/v1/jobs",
                    json={"job": "examples.jobs.greet", "args": ["private"]},
                    timeout=5,
                )
                # 422 until the worker has registered the example jobs.
                if response.status_code == 201:
                    job_id = response.json()["id"]
            else:
                job = httpx.get(f"{api}/api/v1/jobs/{job_id}", timeout=5).json()
                if job["state"] == "Succeeded":
                    return str(job["result"])
        time.sleep(0.5)
    raise AssertionError(f"no result within {READY_LIMIT_SECONDS:.0f} s")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A project folder; whatever of a private node is left running at the end is killed."""
    folder = tmp_path / "project"
    folder.mkdir()
    yield folder
    for pid in _node_processes(folder / STATE_FOLDER / "home"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_dev_runs_on_a_private_node_and_stops_it(project: Path, stop: str) -> None:
    path = f"{os.environ.get('PATH', '')}:{SBIN}"
    if shutil.which("rabbitmq-server", path=path) is None:
        pytest.skip("rabbitmq-server is not installed: dev has no private node to start")
    amqp_port, api_port = free_port(), free_port()
    assert not _port_open(amqp_port)
    env = _env(
        project,
        amqp_port,
        path,
        ORCHESTRATOR_API_PORT=str(api_port),
        ORCHESTRATOR_WORKER_OPS_PORT="0",
        ORCHESTRATOR_SCHEDULER_OPS_PORT="0",
        ORCHESTRATOR_JANITOR_OPS_PORT="0",
    )
    log = project.parent / "dev.log"
    dev = _dev(env, project, log)
    home = project / STATE_FOLDER / "home"
    try:
        assert _greet_through(f"http://127.0.0.1:{api_port}", dev, log) == "Hello, private!"
        running = _node_processes(home)
        assert "beam.smp" in running.values() and "epmd" in running.values(), running
        assert _port_open(amqp_port)
    finally:
        if stop == "ctrl-c":
            os.killpg(dev.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        else:
            dev.send_signal(signal.SIGTERM)  # what a supervisor does
        dev.wait(timeout=180)
    output = log.read_text(errors="replace")
    assert dev.returncode == 0, output
    assert "starting a private node" in output and "private RabbitMQ node stopped" in output
    assert _node_processes(home) == {}, output
    assert not _port_open(amqp_port)
    # Its data stays in the project folder, which ignores itself in a git work tree.
    assert (project / STATE_FOLDER / "mnesia").is_dir()
    assert (project / STATE_FOLDER / ".gitignore").read_text() == "*\n"


def _refused(project: Path, amqp_port: int, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator_cli", "dev"],
        cwd=project,
        env=_env(project, amqp_port, path),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_rabbitmq_server_or_docker_dev_says_how_to_start_a_broker(project: Path) -> None:
    empty = project.parent / "bin"
    empty.mkdir()
    port = free_port()
    done = _refused(project, port, str(empty))
    assert done.returncode == 1
    assert f"RabbitMQ is not reachable at amqp://guest:***@127.0.0.1:{port}/" in done.stderr
    assert "Start it first" in done.stderr and "rabbitmq-server -detached" in done.stderr
    assert "or point ORCHESTRATOR_AMQP_URL at a running broker." in done.stderr
    if Path("/usr/sbin/rabbitmq-server").exists():  # installed, but PATH does not list it
        assert 'PATH="$PATH:/usr/sbin"' in done.stderr
    assert not (project / STATE_FOLDER).exists()


def test_with_docker_on_path_dev_prints_the_pinned_images_docker_run_line(project: Path) -> None:
    tools = project.parent / "bin"
    tools.mkdir()
    called = project.parent / "docker-called"
    docker = tools / "docker"
    docker.write_text(f"#!/bin/sh\necho \"$@\" >> {called}\nexit 1\n")
    docker.chmod(0o755)
    port = free_port()
    done = _refused(project, port, str(tools))
    assert done.returncode == 1
    line = f"docker run -d --name orchestrator-rabbitmq -p {port}:5672 {PINNED_IMAGE}"
    assert f"Start one with Docker:\n  {line}\n" in done.stderr, done.stderr
    assert not called.exists(), "dev ran docker instead of saying the line"
    assert not (project / STATE_FOLDER).exists()


def test_dev_starts_no_node_on_a_port_something_else_answers_on(project: Path) -> None:
    path = f"{os.environ.get('PATH', '')}:{SBIN}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _refused(project, port, path)
    assert done.returncode == 1
    assert "RabbitMQ is not reachable" in done.stderr
    assert "starting a private node" not in done.stderr
    assert not (project / STATE_FOLDER).exists()
