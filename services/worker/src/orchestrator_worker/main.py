"""Entry point of the worker role: ``orchestrator-worker`` or ``orchestrator worker``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from orchestrator.catalog import Catalog
from orchestrator.process import Signals, exit_now, settle, start_role
from orchestrator.settings import Settings
from orchestrator_worker.worker import Worker


async def run(settings: Settings, *, shutdown_grace: float | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully (``worker_shutdown_grace_seconds``
    unless ``shutdown_grace`` is given); a person's second signal ends the grace at once.

    Jobs still running when the grace ends are handed back and the process ends that instant
    (``os._exit``): a thread cannot be stopped, and it must not run on beside the next attempt.
    """
    catalog = Catalog.from_modules(settings.jobs)
    if not len(catalog):
        logging.getLogger(__name__).warning(no_jobs_message(settings.jobs))
    signals = Signals().install()
    grace = settings.worker_shutdown_grace_seconds if shutdown_grace is None else shutdown_grace
    worker = Worker(settings, catalog, shutdown_grace=grace, exit_process=lambda: exit_now(0))
    await worker.run(signals.stop, signals.now)
    await settle()


def no_jobs_message(modules: Sequence[str]) -> str:
    """Why a worker has no jobs: no modules named, or modules that define none."""
    if not modules:
        return "no jobs loaded: set ORCHESTRATOR_JOBS (or --jobs) to your job modules"
    return (
        f"no jobs loaded: {', '.join(modules)} (ORCHESTRATOR_JOBS) imported but define no "
        "@job function"
    )


def main() -> None:
    start_role("worker", run)
