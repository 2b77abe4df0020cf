"""Jobs the benchmarks run."""

from __future__ import annotations

from orchestrator import job


@job(name="bench.noop", queue="default", retries=0)
async def noop() -> None:
    """Does nothing: the benchmark measures the system, not the job."""
