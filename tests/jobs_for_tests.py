"""Jobs the test suite registers (``ORCHESTRATOR_JOBS=tests.jobs_for_tests``)."""

from __future__ import annotations

from datetime import datetime

from orchestrator import job


@job
def add(a: int, b: int) -> int:
    return a + b


@job
def echo(text: str, when: datetime | None = None) -> str:
    return text if when is None else f"{text} @ {when.isoformat()}"


@job(retries=0)
def fail() -> None:
    raise RuntimeError("this job always fails")


@job(queue="critical", retries=3)
async def urgent(n: int) -> int:
    return n * 2
