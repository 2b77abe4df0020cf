"""Entry point of the scheduler role: ``orchestrator-scheduler`` or ``orchestrator scheduler``."""

from __future__ import annotations

import asyncio

from orchestrator.process import prepare_service, settle, stop_on_signals
from orchestrator.settings import Settings, load_settings
from orchestrator_scheduler.scheduler import Scheduler


async def run(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop."""
    await Scheduler(settings).run(stop_on_signals())
    await settle()


def main() -> None:
    settings = load_settings()
    prepare_service("scheduler", settings)
    asyncio.run(run(settings))
