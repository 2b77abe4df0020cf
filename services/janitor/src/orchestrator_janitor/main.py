"""Entry point of the janitor role: ``orchestrator-janitor`` or ``orchestrator janitor``."""

from __future__ import annotations

import asyncio

from orchestrator.process import prepare_service, settle, stop_on_signals
from orchestrator.settings import Settings, load_settings
from orchestrator_janitor.janitor import Janitor


async def run(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop."""
    await Janitor(settings).run(stop_on_signals())
    await settle()


def main() -> None:
    settings = load_settings()
    prepare_service("janitor", settings)
    asyncio.run(run(settings))
