"""Schema migrations (Alembic), run by ``orchestrator db upgrade`` and by ``make dev``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from orchestrator.db import create_engine

    async def read() -> str | None:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
        finally:
            await engine.dispose()

    return asyncio.run(read())


def pending_revisions(database_url: str) -> list[str]:
    """The revisions ``upgrade`` would apply, oldest first, each as "id: message"."""
    script = ScriptDirectory.from_config(alembic_config(database_url))
    current = current_revision(database_url)
    pending = script.iterate_revisions("heads", current)
    return [f"{rev.revision}: {rev.doc}" for rev in reversed(list(pending))]
