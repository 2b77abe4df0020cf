"""A project of its own on Orchestrator, as README.md's "Your own jobs" tells it.

A fresh virtual environment is made and filled by the README's own lines (python3.11 -m venv,
pip install -e of the checkout's packages; pip's cache makes a rerun quick). Then, outside the
checkout, in a copy of examples/own-project/: its worker runs under the `orchestrator` command
from that folder with ORCHESTRATOR_JOBS=myapp.jobs, against the test PostgreSQL and RabbitMQ and
an API from the checkout's environment; its enqueue.py prints the results; and every Python
example of the README runs there with that environment (none needs the checkout importable).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.system import READY_LIMIT_SECONDS, ROOT, System

# Filling a fresh environment takes 40 s on a quiet machine and over 2 minutes at load 12: more
# than the suite's default limit for one test with its fixtures.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

README = ROOT / "README.md"
EXAMPLE = ROOT / "examples" / "own-project"
#: A fresh environment with the six packages: about a minute with pip's cache warm.
INSTALL_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class OwnProject:
    folder: Path
    python: Path
    orchestrator: Path


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _install_lines() -> list[str]:
    """The shell lines of the section's first bash block, continuation lines joined, without
    the line that says where the checkout is (the test sets ORCH itself)."""
    block = re.search(r"```bash\n(.*?)```", _section("Your own jobs"), re.S)
    assert block is not None
    joined = block.group(1).replace("\\\n", " ")
    lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "ORCH="))]


def _clean_env(**extra: str) -> dict[str, str]:
    """No ORCHESTRATOR_* setting of the test run, and nothing of the checkout on PYTHONPATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORCHESTRATOR_", "VIRTUAL_ENV")) and k != "PYTHONPATH"
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> OwnProject:
    folder = tmp_path_factory.mktemp("outside") / "own-project"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    lines = _install_lines()
    assert lines[0].startswith("python3.11 -m venv") and len(lines) == 3, lines
    if shutil.which("python3.11") is None:  # the interpreter of this run is a 3.11 too
        lines[0] = lines[0].replace("python3.11", sys.executable, 1)
    for line in lines:
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=folder,
            env=_clean_env(ORCH=str(ROOT), PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_QUIET="1"),
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    return OwnProject(folder, folder / ".venv/bin/python", folder / ".venv/bin/orchestrator")


@pytest.fixture
def system(postgres_url: str, amqp_url: str, tmp_path: Path) -> Iterator[System]:
    running = System(
        database_url=postgres_url, jobs="examples.jobs", amqp_url=amqp_url, log_dir=tmp_path
    )
    try:
        running.start("api", "api")
        yield running
    finally:
        running.stop_all()


def _start_own_worker(system: System, own: OwnProject) -> None:
    """The project's worker from its own environment and folder, registered with ``system``
    so that its readiness waits watch it and its stop ends it."""
    name = "own-worker"
    env = system.env(ORCHESTRATOR_JOBS="myapp.jobs")
    del env["PYTHONPATH"]
    with (system.log_dir / f"{system.namespace}-{name}.log").open("wb") as log:
        system.processes[name] = subprocess.Popen(
            [str(own.orchestrator), "worker"], cwd=own.folder, env=env, stdout=log, stderr=log
        )
    system.roles[name] = "worker"


def _run(own: OwnProject, arguments: list[str], api_url: str) -> subprocess.CompletedProcess[str]:
    """The project's Python with ``arguments``, in its folder, ORCHESTRATOR_URL set to the API."""
    return subprocess.run(
        [str(own.python), *arguments],
        cwd=own.folder,
        env=_clean_env(ORCHESTRATOR_URL=api_url),
        capture_output=True,
        text=True,
        timeout=READY_LIMIT_SECONDS,
    )


def _readme_python_blocks() -> list[str]:
    found = re.findall(r"^( *)```python\n(.*?)^\1```", README.read_text(), re.M | re.S)
    return [textwrap.dedent(body) for _, body in found]


def _run_block(own: OwnProject, block: str, api_url: str) -> None:
    """Run one README example as it is, against ``api_url``; a ``print(…)  # text`` line must
    print that text. Waits get the harness's limit: a loaded machine is slow, not wrong."""
    code = block.replace("http://localhost:5001", api_url)
    code = re.sub(r"timeout=\d+", f"timeout={READY_LIMIT_SECONDS:.0f}", code)
    done = _run(own, ["-c", code], api_url)
    assert done.returncode == 0, f"{block}\n{done.stderr}"
    for expected in re.findall(r"^\s*print\(.*\)\s+#\s*(.+)$", block, re.M):
        assert expected.strip() in done.stdout, f"{block}\n{done.stdout}"


def test_the_project_runs_its_worker_and_script_and_every_readme_example(
    own: OwnProject, system: System
) -> None:
    blocks = _readme_python_blocks()
    own_blocks = [b for b in blocks if "myapp" in b]
    other_blocks = [b for b in blocks if "myapp" not in b]
    assert own_blocks and other_blocks

    _start_own_worker(system, own)
    system.wait_for_api()
    system.wait_for_catalog("myapp.jobs.word_count")
    done = _run(own, ["enqueue.py", "to", "be", "or", "not", "to", "be"], system.api_url)
    assert done.returncode == 0, done.stderr
    expected = ['{"be": 2, "not": 1, "or": 1, "to": 2}', "TO BE OR NOT TO BE!"]
    assert done.stdout.splitlines() == expected
    for block in own_blocks:
        _run_block(own, block, system.api_url)

    # The README's other examples run against `make dev`'s example jobs: one queue, one set of
    # jobs per worker, so the project's worker makes way for the checkout's.
    assert system.stop("own-worker") == 0
    system.start("worker", "worker")
    system.wait_for_catalog("examples.jobs.greet")
    for block in other_blocks:
        _run_block(own, block, system.api_url)


def test_the_projects_pyproject_installs_on_the_checkouts_packages(own: OwnProject) -> None:
    # A dry run: the project builds and needs nothing more than what the README's lines put in.
    done = subprocess.run(
        [str(own.python), "-m", "pip", "install", "--dry-run", "-e", str(own.folder)],
        env=_clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^Would install myapp-0\.1\.0$", done.stdout, re.M), done.stdout
