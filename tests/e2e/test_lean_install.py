"""The public face installs alone: ``orchestrator-common`` without its ``server`` extra.

A web application that only defines and enqueues jobs installs the base distribution into a
fresh virtual environment: no store, broker, server or tracing SDK comes with it, and its
``Client`` enqueues against a running system (this repository's roles) and reads the result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.system import ROOT, System

pytestmark = pytest.mark.e2e

#: Distributions only the roles need: none of them may come with the base install.
SERVER_ONLY = (
    "sqlalchemy",
    "sqlmodel",
    "asyncpg",
    "aiosqlite",
    "alembic",
    "aio-pika",
    "aiormq",
    "uvicorn",
    "starlette",
    "fastapi",
    "jsonschema",
    "prometheus-client",
    "opentelemetry-sdk",
    "pydantic-settings",
)

_APPLICATION = """
import json, sys
from orchestrator import Client, JobCall, job

@job(name="lean.defined")          # defining a job needs only the base install too
def defined(a: int) -> int:
    return a

with Client(sys.argv[1]) as client:
    job_id = client.enqueue(JobCall.named("tests.add", 2, 3))
    result = client.wait(job_id, timeout=120)
print(json.dumps({"result": result, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _uv() -> str | None:
    found = shutil.which("uv")
    bundled = ROOT / ".tools" / "bin" / "uv"
    return found or (str(bundled) if bundled.exists() else None)


@pytest.fixture(scope="module")
def lean_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment with only ``libs/common`` installed (no extra)."""
    venv = tmp_path_factory.mktemp("lean") / "venv"
    python = venv / "bin" / "python"
    uv = _uv()
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    if uv is not None:
        create = [uv, "venv", "-q", "--python", sys.executable, str(venv)]
        subprocess.run(create, check=True, env=env)
        install = [uv, "pip", "install", "-q", "--python", str(python), str(ROOT / "libs/common")]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        install = [str(python), "-m", "pip", "install", "-q", str(ROOT / "libs/common")]
    subprocess.run(install, check=True, env=env)
    return python


def _installed(python: Path) -> set[str]:
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return {name.lower().replace("_", "-") for name in json.loads(done.stdout)}


def test_the_base_install_brings_no_server_dependency(lean_python: Path) -> None:
    installed = _installed(lean_python)
    assert "orchestrator-common" in installed and "httpx" in installed  # it did install
    assert installed.isdisjoint(SERVER_ONLY), sorted(installed & set(SERVER_ONLY))


@pytest.fixture
def system(database_url: str, amqp_url: str, tmp_path: Path) -> Iterator[System]:
    running = System(
        database_url=database_url, jobs="tests.worker_jobs", amqp_url=amqp_url, log_dir=tmp_path
    )
    try:
        running.start("api", "api")
        running.start("worker", "worker")
        running.wait_for_api()
        running.wait_for_catalog("tests.add")
        yield running
    finally:
        running.stop_all()


def test_an_application_with_the_base_install_enqueues_and_reads_results(
    lean_python: Path, system: System, tmp_path: Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(_APPLICATION)
    # Run outside the repository, so nothing of the checkout is importable but the install.
    done = subprocess.run(
        [str(lean_python), str(script), system.api_url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["result"] == 5
    assert {"sqlalchemy", "aio_pika"}.isdisjoint(answer["loaded"])
