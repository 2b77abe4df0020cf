"""The janitor role: it removes (expired jobs, dead server records, old dead letters, batches and
counters) and drains the dead-letter queue into the store so it can be listed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, servers
from orchestrator.db import create_engine
from orchestrator.loops import Loop, Ops, run_role
from orchestrator.presence import Presence
from orchestrator.settings import Settings
from orchestrator.topology import Topology
from orchestrator_janitor import pruning
from orchestrator_janitor.counters import fold_counters
from orchestrator_janitor.drain import DeadLetterDrain
from orchestrator_janitor.expiry import expire_failed_jobs, expire_jobs, remove_dead_servers

log = logging.getLogger(__name__)

BATCH = 1000


class Janitor:
    def __init__(self, settings: Settings, *, interval: float = 30.0) -> None:
        self.settings = settings
        self.interval = interval
        self.info = servers.ServerInfo(role="janitor")
        self.topology = Topology.of(settings)
        # The janitor's moves (children of expired parents, dead-lettered jobs) are not
        # elected: no filters, the built-in hooks only.
        self.transitions = composition.transitions(settings.job_retention)

    async def run(self, stop: asyncio.Event) -> None:
        engine = create_engine(self.settings.database_url)
        drain = self.drain(engine)
        try:
            await run_role(
                Presence(engine, self.info, self.settings.heartbeat_seconds),
                [*self.loops(engine), Loop("drain-dead-letters", 2.0, drain.tick)],
                stop,
                ops=Ops(self.settings.api_host, self.settings.janitor_ops_port),
            )
        finally:
            await drain.close()
            await engine.dispose()

    def drain(self, engine: AsyncEngine) -> DeadLetterDrain:
        return DeadLetterDrain(
            engine,
            self.settings.broker_urls,
            self.topology,
            name=self.info.id,
            body_limit=self.settings.dead_letter_body_max_bytes,
            transitions=self.transitions,
        )

    def loops(self, engine: AsyncEngine) -> list[Loop]:
        """The store-only loops (every one removes at most ``BATCH`` rows per transaction)."""
        settings = self.settings

        async def dead_servers() -> bool:
            silent_for = timedelta(seconds=max(60.0, 10 * settings.heartbeat_seconds))
            removed = await remove_dead_servers(engine, silent_for=silent_for)
            if removed:
                log.info("forgot %d servers with no heartbeat for %s", removed, silent_for)
            return False

        async def counters() -> bool:
            folded = await fold_counters(engine)
            return folded >= 500

        async def failed_jobs() -> int:
            if settings.failed_job_retention is None:
                return 0
            return await expire_failed_jobs(
                engine, self.transitions, batch=BATCH, failed_for=settings.failed_job_retention
            )

        removers: dict[str, Callable[[], Awaitable[int]]] = {
            "expire-jobs": lambda: expire_jobs(engine, self.transitions, batch=BATCH),
            "expire-failed-jobs": failed_jobs,
            "prune-dead-letters": lambda: pruning.prune_dead_letters(
                engine, older_than=settings.dead_letter_retention, batch=BATCH
            ),
            "prune-batches": lambda: pruning.prune_batches(
                engine, older_than=settings.job_retention, batch=BATCH
            ),
            "prune-counters": lambda: pruning.prune_counters(
                engine, older_than=settings.counter_retention, batch=BATCH
            ),
        }
        return [
            *(
                Loop(name, self.interval, _removing(name, remove))
                for name, remove in removers.items()
            ),
            Loop("fold-counters", self.interval, counters),
            Loop("dead-servers", self.interval, dead_servers),
        ]


def _removing(name: str, remove: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[bool]]:
    async def tick() -> bool:
        removed = await remove()
        if removed:
            log.info("%s: removed %d", name, removed)
        return removed >= BATCH  # a full batch: run again at once

    return tick
