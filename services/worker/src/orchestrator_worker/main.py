"""Entry point of the worker role: ``orchestrator-worker`` or ``orchestrator worker``."""

from __future__ import annotations

import asyncio
import logging
import signal

from orchestrator import tracing
from orchestrator.catalog import Catalog
from orchestrator.process import tune_garbage_collector
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    grace = settings.worker_shutdown_grace_seconds if shutdown_grace is None else shutdown_grace
    await Worker(settings, catalog, shutdown_grace=grace).run(stop)


def main() -> None:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    tracing.configure("worker")
    tune_garbage_collector()
    asyncio.run(run(settings))
