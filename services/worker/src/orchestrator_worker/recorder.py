"""Recording outcomes: many jobs' results in one transaction, guarded by each job's claim.

Each outcome proposes a state (``Succeeded`` or ``Failed``: :func:`orchestrator.recording.propose`);
the worker's election filters may replace it (the first of them is the retry filter: ``Failed``
with a retry left becomes ``Scheduled``) before the state machine moves the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator import outbox
from orchestrator.filters import Filters
from orchestrator.lifecycle import Change, Election, RowChange, State
from orchestrator.outbox import Pending
from orchestrator.recording import Bounds as Bounds  # the worker builds its own from settings
from orchestrator.recording import propose
from orchestrator.transitions import Transitions
from orchestrator_worker.claims import ClaimResult, claim, claim_now
from orchestrator_worker.execution import Outcome


@dataclass(frozen=True)
class Entered:
    """The state a recorded job entered, and for a retry the seconds until it runs again."""

    state: State
    delay_seconds: int | None = None


async def record(
    conn: AsyncConnection,
    outcomes: Sequence[Outcome],
    setup: Round,
    now: datetime,
) -> tuple[dict[object, Entered], list[Pending]]:
    """Commit every outcome whose claim still holds; returns what each recorded job
    entered and the outbox entries to publish after commit (retry messages through the delay
    levels, continuations and batch completions their ending released).

    The guard on attempt and worker id means a stale worker (its lease expired and the job was
    claimed again, or the job was deleted) can never overwrite what happened since.
    """
    elections = []
    for outcome in outcomes:
        election = propose(outcome, now, setup.bounds)
        setup.elections.elect(election)
        elections.append(election)
    recorded: dict[object, Entered] = {}
    pending: list[Pending] = []
    for target in dict.fromkeys(e.state for e in elections):
        chosen = [e for e in elections if e.state is target]
        items = [
            RowChange(
                e.job.job_id,
                Change(e.reason, e.values, e.data),
                guard={"attempt": e.job.attempt, "worker_id": setup.worker_id},
            )
            for e in chosen
        ]
        # Elected above already; the filters' applied hooks see the move.
        moved = await setup.transitions.move_each(
            conn, items, expected={State.PROCESSING}, target=target, now=now, elect=False
        )
        ids = set(moved)
        entered = [e for e in chosen if e.job.job_id in ids]
        recorded.update({e.job.job_id: Entered(target, e.delay_seconds) for e in entered})
        pending.extend(moved.pending)
        delayed = [e for e in entered if e.delay_seconds is not None]
        pending.extend(await outbox.add(conn, [_delayed(e) for e in delayed], now))
    return recorded, pending


def _delayed(election: Election) -> outbox.Publication:
    job = election.job
    trace = getattr(job, "trace_context", None) or {}
    return outbox.Publication(job.job_id, job.queue, trace, election.delay_seconds or 0)


@dataclass(frozen=True)
class Round:
    """What a write round needs besides its outcomes and deliveries."""

    worker_id: str
    lease: timedelta
    #: The worker's state machine (its configured filters' applied hooks see every move).
    transitions: Transitions
    #: The worker's election filters (the retry filter first) for outcomes.
    elections: Filters
    #: What an outcome may hold (results' size, tracebacks' length).
    bounds: Bounds = field(default_factory=Bounds)


async def write_round(
    conn: AsyncConnection,
    outcomes: Sequence[Outcome],
    batch: ClaimResult,
    setup: Round,
) -> tuple[datetime, dict[object, Entered], list[Pending]]:
    """Record ``outcomes`` and claim ``batch``'s jobs in the caller's transaction; returns the
    database's time of the round and what :func:`record` does, with the claims' outbox
    entries added.

    The rows of both are locked first, together, in ascending id order (with the clock, in
    one round trip): each move locks its own rows in that order, but outcomes (one move per
    target state) and then claims would otherwise take several ascending runs, which can cross
    another transaction's one. A job not claimable at that moment is a lost claim (an
    outcome's row is this worker's already).
    """
    ids = [o.job.job_id for o in outcomes] + [job_id for _, job_id in batch.decoded]
    claimable = {State.PROCESSING, State.ENQUEUED, State.SCHEDULED}
    now, locked = await setup.transitions.lock_at_clock(conn, ids, claimable)
    recorded, pending = await record(conn, outcomes, setup, now)
    await claim(conn, setup.transitions, batch, setup.worker_id, setup.lease, now, only=locked)
    return now, recorded, pending + batch.redelayed


def claims_alone(setup: Round, engine: AsyncEngine) -> bool:
    """Whether a round of claims alone may be one statement that commits on its own
    (:func:`claim_alone`): on PostgreSQL, when nothing but the rows and their history is
    written for a claim (no filter watches changes)."""
    return engine.dialect.name == "postgresql" and setup.transitions.writes_only_rows(
        State.PROCESSING
    )


async def claim_alone(engine: AsyncEngine, batch: ClaimResult, setup: Round) -> datetime | None:
    """Claim ``batch``'s jobs in one statement (:func:`orchestrator_worker.claims.claim_now`);
    the database's time of the claim, None when no delivery named a job."""
    return await claim_now(engine, setup.transitions, batch, setup.worker_id, setup.lease)
