"""Jobs the benchmarks run."""

from __future__ import annotations

from bench import marks
from orchestrator import job


@job(name="bench.noop", queue="default", retries=0)
async def noop() -> None:
    """Does nothing: the benchmark measures the system, not the job."""


@job(name="bench.mark", queue="default", retries=0)
async def mark(tag: str, ref: float) -> None:
    """``bench.peers``' job: the same body as the peers' (``bench.marks.record``)."""
    marks.record(tag, ref)
