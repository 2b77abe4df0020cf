"""The janitor role: it only removes (expired jobs, dead server records)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import servers
from orchestrator.db import create_engine
from orchestrator.loops import Loop, run_role
from orchestrator.settings import Settings
from orchestrator_janitor.counters import fold_counters
from orchestrator_janitor.expiry import expire_jobs, remove_dead_servers

log = logging.getLogger(__name__)

BATCH = 1000


class Janitor:
    def __init__(self, settings: Settings, *, interval: float = 30.0) -> None:
        self.settings = settings
        self.interval = interval
        self.info = servers.ServerInfo(role="janitor")

    async def run(self, stop: asyncio.Event) -> None:
        engine = create_engine(self.settings.database_url)
        try:
            await run_role(
                engine,
                self.info,
                self.loops(engine),
                stop,
                heartbeat_seconds=self.settings.heartbeat_seconds,
                ops_host=self.settings.api_host,
                ops_port=self.settings.janitor_ops_port,
            )
        finally:
            await engine.dispose()

    def loops(self, engine: AsyncEngine) -> list[Loop]:
        async def jobs() -> bool:
            removed = await expire_jobs(engine, batch=BATCH, retention=self.settings.job_retention)
            if removed:
                log.info("removed %d expired jobs", removed)
            return removed >= BATCH

        async def dead_servers() -> bool:
            silent_for = timedelta(seconds=max(60.0, 10 * self.settings.heartbeat_seconds))
            removed = await remove_dead_servers(engine, silent_for=silent_for)
            if removed:
                log.info("forgot %d servers with no heartbeat for %s", removed, silent_for)
            return False

        async def counters() -> bool:
            folded = await fold_counters(engine)
            return folded >= 500

        return [
            Loop("expire-jobs", self.interval, jobs),
            Loop("fold-counters", self.interval, counters),
            Loop("dead-servers", self.interval, dead_servers),
        ]
