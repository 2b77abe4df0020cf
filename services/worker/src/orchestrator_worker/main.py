"""Entry point of the worker role: ``orchestrator-worker`` or ``orchestrator worker``."""

from __future__ import annotations

import asyncio
import logging

from orchestrator.catalog import Catalog
from orchestrator.process import prepare_service, stop_on_signals
from orchestrator.settings import Settings, load_settings
from orchestrator_worker.worker import Worker


async def run(settings: Settings, *, shutdown_grace: float | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully (``worker_shutdown_grace_seconds``
    unless ``shutdown_grace`` is given)."""
    catalog = Catalog.from_modules(settings.jobs)
    if not len(catalog):
        logging.getLogger(__name__).warning(
            "no jobs loaded: set ORCHESTRATOR_JOBS (or --jobs) to your job modules"
        )
    stop = stop_on_signals()
    grace = settings.worker_shutdown_grace_seconds if shutdown_grace is None else shutdown_grace
    await Worker(settings, catalog, shutdown_grace=grace).run(stop)


def main() -> None:
    settings = load_settings()
    prepare_service("worker", settings)
    asyncio.run(run(settings))
