"""Entry point of the scheduler role: ``orchestrator-scheduler`` or ``orchestrator scheduler``."""

from __future__ import annotations

from orchestrator.process import settle, start_role, stop_on_signals
from orchestrator.settings import Settings
from orchestrator_scheduler.scheduler import Scheduler


async def run(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop."""
    await Scheduler(settings).run(stop_on_signals())
    await settle()


def main() -> None:
    start_role("scheduler", run)
