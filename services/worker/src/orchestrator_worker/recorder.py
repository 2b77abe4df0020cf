"""Recording outcomes: many jobs' results in one transaction, guarded by each job's claim."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import states
from orchestrator.outbox import Pending
from orchestrator.states import RowChange, State
from orchestrator_worker.execution import Outcome


def _change(outcome: Outcome, now: datetime) -> states.Change:
    if outcome.succeeded:
        return states.Change(
            reason="Completed",
            values={"result": outcome.result, "finished_at": now},
            data={"duration": round(outcome.duration, 6)},
        )
    return states.Change(
        reason=f"{outcome.error_type}: {outcome.error_message}"[:1000],
        values={
            "error_type": outcome.error_type,
            "error_message": outcome.error_message,
            "error_traceback": outcome.error_traceback,
            "finished_at": now,
        },
        data={"attempt": outcome.job.attempt, "duration": round(outcome.duration, 6)},
    )


async def record(
    conn: AsyncConnection,
    outcomes: Sequence[Outcome],
    worker_id: str,
    retention: timedelta,
    now: datetime,
) -> tuple[set[object], list[Pending]]:
    """Commit every outcome whose claim still holds; returns the ids recorded and the outbox
    entries of the jobs their ending enqueued (continuations, batch completions), to publish
    after commit.

    The guard on attempt and worker id means a stale worker (its lease expired and the job was
    claimed again, or the job was deleted) can never overwrite what happened since.
    """
    recorded: set[object] = set()
    pending: list[Pending] = []
    for target, wanted in ((State.SUCCEEDED, True), (State.FAILED, False)):
        items = [
            RowChange(
                o.job.job_id,
                _change(o, now),
                guard={"attempt": o.job.attempt, "worker_id": worker_id},
            )
            for o in outcomes
            if o.succeeded is wanted
        ]
        moved = await states.move_each(
            conn,
            items,
            expected={State.PROCESSING},
            target=target,
            now=now,
            retention=retention,
        )
        recorded.update(moved)
        pending.extend(moved.pending)
    return recorded, pending
