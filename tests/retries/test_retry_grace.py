"""The scheduler's safety net for retries: re-promoted only when overdue by the grace period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import composition, store
from orchestrator.lifecycle import State
from orchestrator_scheduler.promotion import next_due, promote_due

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
GRACE = timedelta(seconds=60)


async def _scheduled(engine: AsyncEngine, why: str, due: datetime) -> uuid.UUID:
    job = store.NewJob(
        name="x", queue="default", args=[], kwargs={}, state=State.SCHEDULED, due_at=due
    )
    job.scheduled_reason = why
    async with engine.begin() as conn:
        await store.create_jobs(conn, [job], T0 - timedelta(hours=1))
    return job.id


async def _promote(engine: AsyncEngine, now: datetime) -> set[uuid.UUID]:
    async with engine.begin() as conn:
        transitions = composition.transitions(timedelta(hours=1))
        pending, _ = await promote_due(conn, transitions, now, limit=100, retry_grace=GRACE)
    return {p.message.job_id for p in pending}


async def test_retries_wait_for_their_message_until_overdue_by_the_grace(engine: AsyncEngine):
    delayed = await _scheduled(engine, "delay", T0)
    retry = await _scheduled(engine, "retry", T0)
    async with engine.connect() as conn:
        assert await next_due(conn, GRACE) == T0
    assert await _promote(engine, T0) == {delayed}
    async with engine.connect() as conn:
        assert await next_due(conn, GRACE) == T0 + GRACE  # the retry's safety-net time
    assert await _promote(engine, T0 + GRACE - timedelta(seconds=1)) == set()
    assert await _promote(engine, T0 + GRACE) == {retry}
    async with engine.connect() as conn:
        history = await store.get_history(conn, retry)
    assert (history[-1].state, history[-1].reason) == ("Enqueued", "Retry overdue")
