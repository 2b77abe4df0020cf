"""The API's access log leaves out the probes (unless ORCHESTRATOR_LOG_PROBES), keeps the rest."""

from __future__ import annotations

import io
import logging

import pytest

from orchestrator import logs


def _access_lines(log_probes: bool) -> str:
    """Access lines that pass the filter ``configure`` installs on uvicorn's access logger,
    caught by a handler of the test's own on that logger (an in-process uvicorn run by an
    earlier test may have changed its level, handlers or propagation)."""
    stream = io.StringIO()
    logs.configure("INFO", "console", log_probes=log_probes)
    access = logging.getLogger("uvicorn.access")
    caught = logging.StreamHandler(stream)
    saved = (access.level, access.disabled)
    access.setLevel(logging.INFO)
    access.disabled = False
    access.addHandler(caught)
    try:
        for path in ("/healthz", "/readyz?verbose=1", "/metrics", "/api/v1/jobs"):
            access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 200)
    finally:
        access.removeHandler(caught)
        access.setLevel(saved[0])
        access.disabled = saved[1]
    return stream.getvalue()


@pytest.fixture(autouse=True)
def _restore_logging():  # type: ignore[no-untyped-def]
    yield
    logs.configure("WARNING", "console")


def test_probes_are_not_access_logged_by_default() -> None:
    lines = _access_lines(log_probes=False)
    assert "/api/v1/jobs" in lines
    assert "/healthz" not in lines and "/readyz" not in lines and "/metrics" not in lines


def test_probes_are_access_logged_when_asked() -> None:
    lines = _access_lines(log_probes=True)
    assert all(path in lines for path in ("/healthz", "/readyz", "/metrics", "/api/v1/jobs"))
