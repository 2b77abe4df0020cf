"""Filters written as a user would, configured by ``module:factory`` or passed as objects."""

from __future__ import annotations

import time
import uuid
from typing import Any

from orchestrator.filters import (
    Applied,
    CallNext,
    Created,
    Creating,
    Election,
    JobFilter,
    Performing,
    State,
)
from tests.api.conftest import ECHO as ECHO_JOB

#: What the hooks saw, for the tests to read.
CREATED: list[Created] = []


class RefuseMallory(JobFilter):
    """Refuses jobs whose ``text`` is ``"mallory"``; tags every other job with a tenant."""

    async def creating(self, context: Creating) -> None:
        if context.kwargs.get("text") == "mallory" or "mallory" in context.args:
            context.refuse("mallory may not enqueue jobs")
        context.parameters["tenant"] = "acme"

    async def created(self, context: Created) -> None:
        CREATED.append(context)


def refuse_mallory() -> RefuseMallory:
    return RefuseMallory()


class Timing(JobFilter):
    """Times each run, and its outcome, around the job (outermost when listed first)."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, int, float, str]] = []

    async def around(self, call_next: CallNext, context: Performing) -> Any:
        started = time.monotonic()
        outcome = "failed"
        try:
            result = await call_next()
            outcome = "succeeded"
            return result
        finally:
            elapsed = time.monotonic() - started
            self.runs.append((context.job.name, context.context.attempt, elapsed, outcome))


class DeleteOnKeyError(JobFilter):
    """A job that fails for good with a KeyError is Deleted instead of kept Failed."""

    def elect(self, election: Election) -> None:
        if election.state is State.FAILED and isinstance(election.exception, KeyError):
            election.state = State.DELETED
            election.reason = f"Deleted by filter: KeyError {election.exception}"


class Journal(JobFilter):
    """Writes down every state change it is shown (applied hook), and which ones committed."""

    def __init__(self) -> None:
        self.shown: list[tuple[uuid.UUID, str]] = []
        self.committed: list[tuple[uuid.UUID, str]] = []

    async def applied(self, context: Applied) -> None:
        moves = [(row.id, context.target.value) for row in context.rows]
        self.shown.extend(moves)
        context.after_commit(lambda: self.committed.extend(moves))

    def life_of(self, job_id: uuid.UUID) -> list[str]:
        return [state for moved, state in self.committed if moved == job_id]


class RunNowInsteadOfDelete(JobFilter):
    """Deleting a scheduled job runs it now instead; every election it sees is written down."""

    def __init__(self) -> None:
        self.seen: list[tuple[uuid.UUID, str | None, str]] = []

    def elect(self, election: Election) -> None:
        source = election.source.value if election.source is not None else None
        self.seen.append((election.job.job_id, source, election.state.value))
        if election.state is State.DELETED and election.source is State.SCHEDULED:
            election.state = State.ENQUEUED
            election.reason = "Run now instead of deleted"


class Quarantine(JobFilter):
    """Jobs of a quarantined name never run again: what would enqueue them deletes them."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)

    def elect(self, election: Election) -> None:
        if election.state is State.ENQUEUED and election.job.name in self.names:
            election.state = State.DELETED
            election.reason = f"Quarantined: {election.job.name} may not run"


class BackToAwaiting(JobFilter):
    """A wrong filter: asks for a transition the state machine does not allow."""

    def elect(self, election: Election) -> None:
        if election.state is State.DELETED and election.source is State.ENQUEUED:
            election.state = State.AWAITING


#: The instances the API builds from ``module:factory`` specs, for the tests to read.
BUILT: list[JobFilter] = []


def run_now_instead_of_delete() -> RunNowInsteadOfDelete:
    built = RunNowInsteadOfDelete()
    BUILT.append(built)
    return built


def quarantine_echo() -> Quarantine:
    return Quarantine(ECHO_JOB)


def back_to_awaiting() -> BackToAwaiting:
    return BackToAwaiting()
