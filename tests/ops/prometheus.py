"""A real Prometheus server for tests: Debian's build, unpacked into .tools/prometheus by
``make system-packages`` (never installed as a service), with a generated configuration, a free
port and its own storage directory."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.system import free_port

_UNPACKED = Path(__file__).resolve().parents[2] / ".tools/prometheus/usr/bin"


def _program(name: str) -> str:
    """The unpacked program, else one on PATH (a machine that has Prometheus already)."""
    unpacked = _UNPACKED / name
    return str(unpacked) if unpacked.exists() else shutil.which(name) or str(unpacked)


PROMETHEUS = _program("prometheus")
PROMTOOL = _program("promtool")


def require_prometheus() -> str:
    if not (Path(PROMETHEUS).exists() and Path(PROMTOOL).exists()):
        pytest.skip("prometheus is not installed (make system-packages installs Debian's)")
    return PROMETHEUS


def config(targets: Mapping[str, Sequence[str]], interval: str = "1s") -> dict[str, Any]:
    """A configuration scraping ``targets`` (job name → host:port list) every ``interval``."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
            for job, addresses in targets.items()
        ],
    }


class Prometheus:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def query(self, expr: str) -> dict[str, Any]:
        """The ``data`` of an instant query; raises with Prometheus' error for a bad query."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        body: dict[str, Any] = response.json()
        if body.get("status") != "success":
            raise ValueError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
        data: dict[str, Any] = body["data"]
        return data

    def vector(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.query(expr)["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of ``expr``, or None while it has no result."""
        result = self.vector(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Prometheus never saw {what}:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.25)


@contextmanager
def running_prometheus(tmp_path: Path, settings: Mapping[str, Any]) -> Iterator[Prometheus]:
    """Start Prometheus with ``settings`` as its configuration; stopped (SIGTERM) on exit."""
    binary = require_prometheus()
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(dict(settings)))
    check = subprocess.run(
        [PROMTOOL, "check", "config", str(config_file)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        server.wait_for("itself ready", lambda: _ready(server.url), timeout=30)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
