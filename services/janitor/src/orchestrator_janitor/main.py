"""Entry point of the janitor role: ``orchestrator-janitor`` or ``orchestrator janitor``."""

from __future__ import annotations

import asyncio
import logging
import signal

from orchestrator import tracing
from orchestrator.process import tune_garbage_collector
from orchestrator.settings import Settings, load_settings
from orchestrator_janitor.janitor import Janitor


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Janitor(settings).run(stop)


def main() -> None:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    tracing.configure("janitor")
    tune_garbage_collector()
    asyncio.run(run(settings))
