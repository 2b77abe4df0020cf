"""The console commands (`orchestrator status`, `jobs`, `job`, `enqueue`, `requeue`, `delete`,
`--version`) run as real processes against one running system (API with keys, worker,
scheduler), shared by the module; each checks what is printed and the exit code."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from orchestrator.lifecycle import State
from orchestrator_cli.console_commands import STATES
from tests.support.system import ROOT, System, free_port

pytestmark = pytest.mark.e2e

API_KEY = "cli-console-test-admin-key"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def system(
    sqlite_template: Path, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    folder = tmp_path_factory.mktemp("cli-console")
    shutil.copyfile(sqlite_template, folder / "orchestrator.db")
    running = System(
        database_url=f"sqlite:///{folder}/orchestrator.db",
        jobs="tests.worker_jobs",
        amqp_url=amqp_url,
        log_dir=folder,
        extra_env={"ORCHESTRATOR_API_KEYS": f"{API_KEY}:admin"},
    )
    try:
        running.start("api", "api")
        running.start("worker", "worker", "--queues", "default", "--concurrency", "4")
        running.start("scheduler", "scheduler")
        running.wait_for_api()
        running.wait_for_catalog("tests.add", api_key=API_KEY)
        yield running
    finally:
        running.stop_all()


def cli(
    *args: str, url: str | None = None, key: str | None = API_KEY
) -> subprocess.CompletedProcess[str]:
    """``orchestrator ARGS`` as a user runs it, the API named by the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.pop("COLUMNS", None)
    if url is not None:
        env["ORCHESTRATOR_URL"] = url
    if key is not None:
        env["ORCHESTRATOR_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "orchestrator_cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(*args: str, url: str) -> str:
    done = cli(*args, url=url)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def failed(*args: str, url: str, code: int = 1, key: str | None = API_KEY) -> str:
    """The one line on stderr of a command that must fail with exit code ``code``."""
    done = cli(*args, url=url, key=key)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def table_rows(text: str, title: str) -> list[str]:
    """The rows of the table headed ``title``: after its header and rule, up to a blank line."""
    lines = text.splitlines()
    start = lines.index(title) + 3
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def enqueue_json(url: str, *args: str) -> dict[str, Any]:
    return dict(json.loads(ok("enqueue", *args, "--json", url=url)))


def test_version_names_the_installed_package() -> None:
    done = cli("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"orchestrator, version {version('orchestrator-cli')}"


def test_importing_the_cli_loads_neither_the_client_nor_rich() -> None:
    # Every `orchestrator worker` and `--help` imports the CLI: the console parts load on use.
    probe = (
        "import json, sys, orchestrator_cli.main\n"
        "print(json.dumps(sorted(m for m in ('httpx', 'rich', 'orchestrator.client') "
        "if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_the_cli_knows_every_state() -> None:
    assert tuple(state.value for state in State) == STATES


def test_status_shows_roles_queues_and_states(system: System) -> None:
    url = system.api_url

    def every_role_announced() -> bool:
        answer = json.loads(ok("status", "--json", url=url))
        return {s["role"] for s in answer["servers"]} >= {"api", "worker", "scheduler"}

    system.wait_until_ready(
        "every role in /servers", every_role_announced, ["api", "worker", "scheduler"]
    )
    done = enqueue_json(url, "tests.add", "--args", "[1, 1]", "--wait")
    assert done["state"] == "Succeeded"

    answer = json.loads(ok("status", "--json", url=url))
    assert answer["states"]["Succeeded"] >= 1
    default = next(q for q in answer["queues"] if q["name"] == "default")
    assert default["consumers"] == 1

    text = ok("status", url=url)
    for heading in ("Roles", "Queues", "Jobs by state"):
        assert heading in text
    for role in ("api", "worker", "scheduler"):
        assert re.search(rf"^ *{role} ", text, re.MULTILINE), text
    assert re.search(r"^ *default +\d+ +1 +\d+ *$", text, re.MULTILINE), text
    succeeded = answer["states"]["Succeeded"]
    assert re.search(rf"^ *Succeeded +{succeeded} *$", text, re.MULTILINE), text


def test_enqueue_wait_prints_id_state_and_result(system: System) -> None:
    text = ok("enqueue", "tests.add", "--args", "[2, 3]", "--wait", url=system.api_url)
    first, second = text.strip().splitlines()
    assert UUID.match(first), first
    assert second == "state: Succeeded  result: 5"

    answer = enqueue_json(system.api_url, "tests.add", "--kwargs", '{"a": 4, "b": 5}', "--wait")
    assert (answer["state"], answer["result"]) == ("Succeeded", 9)


def test_job_shows_details_and_history(system: System) -> None:
    job_id = enqueue_json(system.api_url, "tests.add", "--args", "[20, 22]", "--wait")["id"]
    text = ok("job", job_id, url=system.api_url)
    assert re.search(rf"^id +{job_id}$", text, re.MULTILINE), text
    assert re.search(r"^job +tests\.add$", text, re.MULTILINE), text
    assert re.search(r"^result +42$", text, re.MULTILINE), text
    assert re.search(r"^args +\[20, 22\]$", text, re.MULTILINE), text
    history = [row.split()[0] for row in table_rows(text, "History")]
    assert history == ["Enqueued", "Processing", "Succeeded"], text

    answer = json.loads(ok("job", job_id, "--json", url=system.api_url))
    assert [h["state"] for h in answer["history"]] == ["Enqueued", "Processing", "Succeeded"]


def test_a_failed_job_shows_its_error_and_can_be_requeued(system: System) -> None:
    url = system.api_url
    line = failed("enqueue", "tests.boom", "--args", '["bad input"]', "--wait", url=url)
    assert "ended Failed" in line and "ValueError: bad input" in line, line
    job_id = json.loads(ok("jobs", "--name", "tests.boom", "--limit", "1", "--json", url=url))[
        "items"
    ][0]["id"]

    text = ok("job", job_id, url=url)
    assert "builtins.ValueError: bad input" in text
    assert "Traceback" in text and "raise ValueError(message)" in text

    assert ok("requeue", job_id, url=url).strip() == f"requeued job {job_id}: now Enqueued"


def test_jobs_filters_by_state_queue_and_name_with_a_limit(system: System) -> None:
    url = system.api_url
    # No worker serves "low" (an ORCHESTRATOR_QUEUES queue): these stay Enqueued.
    waiting = [enqueue_json(url, "tests.noop", "--queue", "low")["id"] for _ in range(3)]
    answer = json.loads(ok("jobs", "--queue", "low", "--state", "enqueued", "--json", url=url))
    assert {item["id"] for item in answer["items"]} >= set(waiting)
    assert {item["state"] for item in answer["items"]} == {"Enqueued"}

    text = ok("jobs", "--queue", "low", "--name", "tests.noop", "--limit", "2", url=url)
    rows = [
        line for line in text.splitlines() if UUID.match(line.split()[0] if line.split() else "")
    ]
    assert [row.split()[0] for row in rows] == waiting[::-1][:2], text  # newest first
    assert all(row.split()[1:4] == ["tests.noop", "low", "Enqueued"] for row in rows), text
    assert text.strip().endswith("2 jobs; more with a higher --limit")

    # Requeue is refused while the job is Enqueued: the API's code and message, exit 1.
    line = failed("requeue", waiting[0], url=url)
    assert line.startswith("error: the API answered 409 "), line


def test_delayed_job_is_scheduled_then_deleted(system: System) -> None:
    url = system.api_url
    text = ok("enqueue", "tests.noop", "--delay", "3600", url=url)
    job_id, state = text.strip().splitlines()
    assert UUID.match(job_id)
    assert state.startswith("state: Scheduled  due: ")

    assert ok("delete", job_id, url=url).strip() == f"deleted job {job_id}: now Deleted"
    answer = json.loads(ok("job", job_id, "--json", url=url))
    assert [h["state"] for h in answer["history"]] == ["Scheduled", "Deleted"]
    assert json.loads(ok("delete", job_id, "--json", url=url)) == {"id": job_id, "state": "Deleted"}


def test_a_bad_or_unknown_id_is_the_apis_404(system: System) -> None:
    url = system.api_url
    line = failed("job", "not-a-job-id", url=url)
    assert line.startswith("error: the API answered 404 "), line
    assert "not a valid job id" in line
    unknown = str(uuid.uuid4())
    for command in ("job", "requeue", "delete"):
        line = failed(command, unknown, url=url)
        assert line.startswith("error: the API answered 404 ") and unknown in line, line


def test_an_unknown_job_name_is_the_apis_422(system: System) -> None:
    line = failed("enqueue", "tests.no_such_job", url=system.api_url)
    assert line.startswith("error: the API answered 422 "), line
    assert "tests.no_such_job" in line


def test_bad_json_in_args_is_refused_before_any_request() -> None:
    # The URL is never contacted: nothing listens there and the answer is still the JSON error.
    url = f"http://127.0.0.1:{free_port()}"
    line = failed("enqueue", "tests.add", "--args", "[2,", url=url, code=2)
    assert line.startswith("error: --args is not valid JSON"), line
    line = failed("enqueue", "tests.add", "--args", '{"a": 1}', url=url, code=2)
    assert "--args must be a JSON array, not an object" in line, line
    line = failed("enqueue", "tests.add", "--kwargs", "[1]", url=url, code=2)
    assert "--kwargs must be a JSON object, not an array" in line, line


def test_a_missing_key_is_the_apis_401_with_the_setting_named(system: System) -> None:
    line = failed("jobs", url=system.api_url, key=None)
    assert line.startswith("error: the API answered 401 "), line
    assert "--key or ORCHESTRATOR_API_KEY" in line


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("jobs",),
        ("job", "00000000-0000-0000-0000-000000000000"),
        ("enqueue", "tests.add", "--args", "[1, 2]"),
        ("requeue", "00000000-0000-0000-0000-000000000000"),
        ("delete", "00000000-0000-0000-0000-000000000000"),
    ],
)
def test_an_unreachable_api_says_so_and_names_the_setting(args: tuple[str, ...]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    line = failed(*args, url=url)
    assert line.startswith(f"error: cannot reach the API at {url} "), line
    assert "--url or ORCHESTRATOR_URL" in line
