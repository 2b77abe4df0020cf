"""Work deferred to a commit runs once after it, never after a rollback, on every engine."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from orchestrator.commit_hooks import after_commit
from orchestrator.db import async_url


async def _transactions(engine: AsyncEngine) -> list[str]:
    ran: list[str] = []
    for round_ in range(3):  # the pool hands the same connection back each time
        async with engine.begin() as conn:
            await conn.execute(sa.text("SELECT 1"))
            after_commit(conn, lambda r=round_: ran.append(f"committed {r}"))
            after_commit(conn, lambda r=round_: ran.append(f"also {r}"))
            assert f"committed {round_}" not in ran  # not before the commit
        ran.append(f"after {round_}")
    with pytest.raises(RuntimeError):
        await _rolled_back(engine, lambda: ran.append("rolled back"))
    async with engine.begin() as conn:
        after_commit(conn, lambda: ran.append("next"))
    return ran


async def _rolled_back(engine: AsyncEngine, callback: Callable[[], None]) -> None:
    async with engine.begin() as conn:
        after_commit(conn, callback)
        raise RuntimeError("roll back")


EXPECTED = [
    "committed 0", "also 0", "after 0",
    "committed 1", "also 1", "after 1",
    "committed 2", "also 2", "after 2",
    "next",
]  # fmt: skip


async def test_the_store_engine_runs_each_callback_once(engine: AsyncEngine) -> None:
    assert await _transactions(engine) == EXPECTED


async def test_an_engine_made_elsewhere_too(database_url: str) -> None:
    other = create_async_engine(async_url(database_url))
    try:
        assert await _transactions(other) == EXPECTED
    finally:
        await other.dispose()
