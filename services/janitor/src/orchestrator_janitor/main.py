"""Entry point of the janitor role: ``orchestrator-janitor`` or ``orchestrator janitor``."""

from __future__ import annotations

from orchestrator.process import settle, start_role, stop_on_signals
from orchestrator.settings import Settings
from orchestrator_janitor.janitor import Janitor


async def run(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop."""
    await Janitor(settings).run(stop_on_signals())
    await settle()


def main() -> None:
    start_role("janitor", run)
