"""A job's life as rules, with no store and no I/O: its states, the moves between them, what
"ended" means, what a continuation does when its parent ends, and elections.

Every module that needs a state rule takes it from here; :mod:`orchestrator.transitions` is the
one place that writes a state, and it checks each move against :data:`ALLOWED`.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from orchestrator import outcomes
from orchestrator.errors import IllegalTransitionError


class State(enum.StrEnum):
    """Hangfire's state names: one word, capitalised, past tense."""

    ENQUEUED = "Enqueued"  #: waiting in its queue for a worker
    SCHEDULED = "Scheduled"  #: waiting for a due time (a requested delay or a retry)
    AWAITING = "Awaiting"  #: waiting for its parent job (a continuation)
    PROCESSING = "Processing"  #: claimed by a worker that holds its lease
    SUCCEEDED = "Succeeded"  #: final; expires
    FAILED = "Failed"  #: kept until a person acts
    DELETED = "Deleted"  #: final; expires


#: Nothing automatic leaves a final state; only a person's requeue does. Final jobs expire.
FINAL: Final = frozenset({State.SUCCEEDED, State.DELETED})
#: A job has ended once it is in one of these (a job with a retry left goes to Scheduled, never
#: to Failed): its continuations follow, its batch counts it.
ENDED: Final = frozenset({State.SUCCEEDED, State.FAILED, State.DELETED})
#: Not ended yet: waiting in some way, or running.
UNENDED: Final = frozenset(State) - ENDED
#: States counted per hour for the dashboard's history graph.
COUNTED: Final = frozenset({State.SUCCEEDED, State.FAILED, State.DELETED})
#: Requeue (run now, fresh retry budget) is allowed from these.
REQUEUEABLE: Final = frozenset(
    {State.FAILED, State.SUCCEEDED, State.DELETED, State.SCHEDULED, State.AWAITING}
)
#: A job may be deleted from any state but Deleted (deleting a Deleted job changes nothing).
DELETABLE: Final = frozenset(State) - {State.DELETED}
#: A message for the job may start it: it waits for one (Enqueued, or a retry that is due).
AWAITING_MESSAGE: Final = frozenset({State.ENQUEUED, State.SCHEDULED})

_S = State
ALLOWED: Final[Mapping[State, frozenset[State]]] = {
    _S.ENQUEUED: frozenset({_S.PROCESSING, _S.DELETED, _S.FAILED}),  # FAILED: dead-lettered
    # PROCESSING: a worker claims a retry whose due time has come.
    _S.SCHEDULED: frozenset({_S.ENQUEUED, _S.PROCESSING, _S.DELETED}),
    _S.AWAITING: frozenset({_S.ENQUEUED, _S.DELETED}),
    # ENQUEUED: lease expired or worker shut down; SCHEDULED: a retry is due later.
    _S.PROCESSING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.SCHEDULED, _S.ENQUEUED, _S.DELETED}),
    _S.FAILED: frozenset({_S.ENQUEUED, _S.DELETED}),
    _S.SUCCEEDED: frozenset({_S.ENQUEUED, _S.DELETED}),
    _S.DELETED: frozenset({_S.ENQUEUED}),
}


def is_allowed(source: State, target: State) -> bool:
    return target in ALLOWED[source]


def check_allowed(sources: Iterable[State], target: State) -> None:
    for source in sources:
        if not is_allowed(source, target):
            raise IllegalTransitionError(source, target)


def has_ended(state: State | str) -> bool:
    return State(state) in ENDED


# -- What a move writes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What a transition writes besides the state: extra columns and the history row's data."""

    reason: str
    values: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RowChange:
    """One job's part in a batch of per-row transitions (e.g. each job's own result)."""

    job_id: uuid.UUID
    change: Change
    #: Extra equality guards, e.g. the claim's attempt and worker id.
    guard: Mapping[str, Any] = field(default_factory=dict)


# -- Continuations --------------------------------------------------------------------------

ContinueOn = Literal["succeeded", "finished"]
#: ``continue_on`` of a batch's continuation (it has no parent job; ``batches`` points at it).
BATCH: Final = "batch"


def continuation_released(parent: State, continue_on: str | None) -> bool:
    """Whether an Awaiting child is enqueued when its parent ends in ``parent``.

    ============  ==========================  ==========================
    parent        ``continue_on="succeeded"``  ``continue_on="finished"``
    ============  ==========================  ==========================
    Succeeded     Enqueued                     Enqueued
    Failed        stays Awaiting               Enqueued
    Deleted       Deleted (naming the parent)  Enqueued
    ============  ==========================  ==========================
    """
    if parent is State.SUCCEEDED:
        return True
    return parent in ENDED and continue_on == "finished"


def continuation_deleted(parent: State, continue_on: str | None) -> bool:
    """Whether an Awaiting child is deleted with its parent (see the table above)."""
    return parent is State.DELETED and continue_on != "finished"


# -- Elections ------------------------------------------------------------------------------


class JobView(Protocol):
    """What every worker-side hook and election may read about the job."""

    @property
    def job_id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def retries_used(self) -> int: ...
    @property
    def options(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class StoredJob:
    """The job an election outside the worker is about (read from the store)."""

    job_id: uuid.UUID
    name: str
    queue: str
    attempt: int
    retries: int
    retries_used: int
    options: Mapping[str, Any]


@dataclass
class Election:
    """The state a job is about to enter; filters may replace it."""

    job: JobView
    state: State
    reason: str
    now: datetime
    #: Columns written with the state (result or error, and for Scheduled ``due_at`` …).
    values: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] | None = None
    #: The job's exception when it failed (None when it succeeded).
    exception: BaseException | None = None
    #: With ``state`` Scheduled: whole seconds the job's message waits in the broker.
    delay_seconds: int | None = None
    #: The state the job is in (None for a worker's outcome: it is Processing).
    source: State | None = None

    def schedule(self, delay_seconds: int, reason: str, *, why: str = "retry") -> None:
        """Enter ``Scheduled`` for ``delay_seconds``; the message goes through the delay levels."""
        self.state = State.SCHEDULED
        self.reason = reason
        self.delay_seconds = outcomes.delay_seconds(delay_seconds)
        self.values["due_at"] = outcomes.after(self.now, self.delay_seconds)
        self.values["scheduled_reason"] = why


@dataclass(frozen=True)
class Choice:
    """What an election decided for one job: from ``source`` to ``state`` with ``change``."""

    job_id: uuid.UUID
    source: State
    state: State
    change: Change

    @classmethod
    def of(cls, election: Election, job_id: uuid.UUID, source: State) -> Choice:
        """The election's outcome, refused when it is not an allowed move from ``source``."""
        check_allowed({source}, election.state)
        change = Change(election.reason, election.values, election.data)
        return cls(job_id, source, election.state, change)
