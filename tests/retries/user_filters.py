"""Filters written as a user would, configured by ``module:factory`` or passed as objects."""

from __future__ import annotations

import time
from typing import Any

from orchestrator.filters import CallNext, Created, Creating, Election, JobFilter, Performing
from orchestrator.states import State

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
