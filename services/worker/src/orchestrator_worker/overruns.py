"""Flagging a sync job that runs past its deadline plus grace (it cannot be interrupted).

The flag is a field of the job's current ``Processing`` history row (``overrunning_since``, by
the database clock), so ``GET /api/v1/jobs/{id}`` shows it with no schema change; it goes with
the run: the next state's history row has none.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import db_now
from orchestrator.store import ownership as store_ownership
from orchestrator_worker.claims import ClaimedJob

log = logging.getLogger(__name__)


async def flag_overrunning(engine: AsyncEngine, worker_id: str, job: ClaimedJob) -> None:
    """Mark ``job``'s run (still this worker's claim) as overrunning."""
    async with engine.begin() as conn:
        now = await db_now(conn)
        row = await store_ownership.run_entry(conn, job.job_id, worker_id, job.attempt)
        if row is None:
            return
        data = {**(row.data or {}), "overrunning_since": now.isoformat()}
        await store_ownership.set_entry_data(conn, row.id, data)
    log.warning("job %s (%s) is past its timeout and still running", job.job_id, job.name)
