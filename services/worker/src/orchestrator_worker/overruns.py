"""Flagging a sync job that runs past its deadline plus grace (it cannot be interrupted).

The flag is a field of the job's current ``Processing`` history row (``overrunning_since``, by
the database clock), so ``GET /api/v1/jobs/{id}`` shows it with no schema change; it goes with
the run: the next state's history row has none.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import db_now
from orchestrator.lifecycle import State
from orchestrator.store import history_table, jobs_table
from orchestrator_worker.claims import ClaimedJob

log = logging.getLogger(__name__)


async def flag_overrunning(engine: AsyncEngine, worker_id: str, job: ClaimedJob) -> None:
    """Mark ``job``'s run (still this worker's claim) as overrunning."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        row = (
            await conn.execute(
                sa.select(history_table.c.id, history_table.c.data)
                .select_from(
                    history_table.join(jobs_table, jobs_table.c.id == history_table.c.job_id)
                )
                .where(
                    history_table.c.job_id == job.job_id,
                    history_table.c.state == State.PROCESSING.value,
                    jobs_table.c.state == State.PROCESSING.value,
                    jobs_table.c.worker_id == worker_id,
                    jobs_table.c.attempt == job.attempt,
                )
                .order_by(history_table.c.id.desc())
                .limit(1)
            )
        ).first()
        if row is None:
            return
        data = {**(row.data or {}), "overrunning_since": now.isoformat()}
        await conn.execute(
            sa.update(history_table).where(history_table.c.id == row.id).values(data=data)
        )
    log.warning("job %s (%s) is past its timeout and still running", job.job_id, job.name)
