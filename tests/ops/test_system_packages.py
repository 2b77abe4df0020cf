"""What `make test` brings onto a machine leaves no service behind (Prometheus is unpacked)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ops.prometheus import PROMETHEUS, PROMTOOL

ROOT = Path(__file__).resolve().parents[2]


def _installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian machine")
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return status.stdout.strip() == "install ok installed"


def test_prometheus_is_unpacked_under_the_project_not_installed() -> None:
    subprocess.run(["bash", "scripts/install-system-packages.sh"], cwd=ROOT, check=True)
    if _installed("prometheus") and not PROMETHEUS.startswith(str(ROOT)):
        pytest.skip("this machine had Debian's prometheus package installed by someone else")
    assert str(ROOT / ".tools/prometheus/usr/bin/prometheus") == PROMETHEUS
    assert str(ROOT / ".tools/prometheus/usr/bin/promtool") == PROMTOOL
    assert not _installed("prometheus"), "the prometheus package (and its service) was installed"
    assert not Path("/lib/systemd/system/prometheus.service").exists()
    assert not Path("/etc/systemd/system/multi-user.target.wants/prometheus.service").exists()
