"""Configuration errors through the real command: one message naming the setting, exit code 2,
no traceback unless --debug (issue 14, points 3 and 4)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

PG = "postgresql://postgres:s3cret-pw@127.0.0.1:5432"


def _orchestrator(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    # Should a role start after all, it must not take a port another test uses.
    base |= {f"ORCHESTRATOR_{r}_OPS_PORT": "0" for r in ("WORKER", "SCHEDULER", "JANITOR")}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator_cli", *args],
        env=base | env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_configuration_error(result: subprocess.CompletedProcess[str], setting: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert setting in output, output
    assert "Traceback" not in output, output
    assert "s3cret-pw" not in output, output
    return output


def _unknown_database() -> str:
    return f"{PG}/orch_no_such_{uuid.uuid4().hex[:12]}"


BAD_DATABASE_URLS = {
    "unknown database": _unknown_database,
    "refused port": lambda: f"postgresql://postgres:s3cret-pw@127.0.0.1:{_closed_port()}/x",
    "mysql": lambda: "mysql://root:s3cret-pw@127.0.0.1/app",
    "unparsable": lambda: "postgresql://postgres:s3cret-pw@127.0.0.1:notaport/x",
    "not a url": lambda: "localhost/orchestrator",
}


@pytest.mark.parametrize("case", sorted(BAD_DATABASE_URLS))
def test_db_upgrade_names_the_database_setting(case: str) -> None:
    url = BAD_DATABASE_URLS[case]()
    result = _orchestrator("db", "upgrade", env={"ORCHESTRATOR_DATABASE_URL": url})
    _assert_configuration_error(result, "ORCHESTRATOR_DATABASE_URL")


def test_db_upgrade_missing_sqlite_folder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/missing/orchestrator.db"
    result = _orchestrator("db", "upgrade", env={"ORCHESTRATOR_DATABASE_URL": url})
    output = _assert_configuration_error(result, "ORCHESTRATOR_DATABASE_URL")
    assert "missing" in output


def test_unknown_database_says_what_was_tried_and_how_to_fix() -> None:
    url = _unknown_database()
    result = _orchestrator("db", "upgrade", env={"ORCHESTRATOR_DATABASE_URL": url})
    output = _assert_configuration_error(result, "ORCHESTRATOR_DATABASE_URL")
    name = url.rsplit("/", 1)[1]
    assert f"postgresql://postgres:***@127.0.0.1:5432/{name}" in output
    assert "createdb" in output


@pytest.mark.parametrize(
    ("role", "url"),
    [
        ("worker", None),
        ("api", "mysql://root:s3cret-pw@127.0.0.1/app"),
        ("scheduler", None),
        ("janitor", "sqlite:////no/such/folder/orchestrator.db"),
    ],
)
def test_role_refuses_a_database_url_that_cannot_work(role: str, url: str | None) -> None:
    result = _orchestrator(role, env={"ORCHESTRATOR_DATABASE_URL": url or _unknown_database()})
    _assert_configuration_error(result, "ORCHESTRATOR_DATABASE_URL")


@pytest.mark.parametrize(
    ("command", "setting", "value"),
    [
        ("api", "ORCHESTRATOR_API_PORT", "abc"),
        ("scheduler", "ORCHESTRATOR_LOG_FORMAT", "fancy"),
        ("worker", "ORCHESTRATOR_AMQP_URL", "http://guest:s3cret-pw@127.0.0.1:5672/"),
        ("dev", "ORCHESTRATOR_AMQP_URL", "amqp://guest:s3cret-pw@127.0.0.1:notaport/"),
        ("janitor", "ORCHESTRATOR_LOG_LEVEL", "LOUD"),
    ],
)
def test_invalid_setting_value_is_named(command: str, setting: str, value: str) -> None:
    result = _orchestrator(command, env={setting: value})
    _assert_configuration_error(result, setting)


def test_dev_refuses_an_unknown_database(amqp_url: str) -> None:
    env = {"ORCHESTRATOR_AMQP_URL": amqp_url, "ORCHESTRATOR_DATABASE_URL": _unknown_database()}
    result = _orchestrator("dev", env=env)
    _assert_configuration_error(result, "ORCHESTRATOR_DATABASE_URL")


def _bad_module_output(result: subprocess.CompletedProcess[str]) -> str:
    output = _assert_configuration_error(result, "ORCHESTRATOR_JOBS")
    line = next(line for line in output.splitlines() if "ORCHESTRATOR_JOBS" in line)
    assert "'myapp.jobs'" in line
    assert "PYTHONPATH" in line
    assert "ModuleNotFoundError: No module named 'myapp'" in line
    return output


def test_worker_with_a_job_module_that_does_not_import(sqlite_url: str, tmp_path: Path) -> None:
    env = {"ORCHESTRATOR_DATABASE_URL": sqlite_url, "ORCHESTRATOR_JOBS": "myapp.jobs"}
    _bad_module_output(_orchestrator("worker", env=env, cwd=tmp_path))


def test_dev_with_a_job_module_that_does_not_import(
    sqlite_url: str, amqp_url: str, tmp_path: Path
) -> None:
    env = {"ORCHESTRATOR_DATABASE_URL": sqlite_url, "ORCHESTRATOR_AMQP_URL": amqp_url}
    output = _bad_module_output(_orchestrator("dev", "--jobs", "myapp.jobs", env=env, cwd=tmp_path))
    assert "API and dashboard" not in output


def test_debug_option_shows_the_traceback() -> None:
    url = "mysql://root:s3cret-pw@127.0.0.1/app"
    result = _orchestrator("--debug", "db", "upgrade", env={"ORCHESTRATOR_DATABASE_URL": url})
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" in output
    assert "ORCHESTRATOR_DATABASE_URL" in output


def test_debug_setting_shows_the_traceback_of_a_role(sqlite_url: str, tmp_path: Path) -> None:
    env = {
        "ORCHESTRATOR_DATABASE_URL": sqlite_url,
        "ORCHESTRATOR_JOBS": "myapp.jobs",
        "ORCHESTRATOR_DEBUG": "1",
    }
    result = _orchestrator("worker", env=env, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" in output
    assert "ModuleNotFoundError" in output
