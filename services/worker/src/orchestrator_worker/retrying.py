"""Automatic retries, built as the first election filter of every worker.

A ``Failed`` outcome with a retry left, of an exception the job's policy retries, becomes
``Scheduled`` (``scheduled_reason`` ``retry``) with reason ``Retry attempt n of N: <message>``, a
due time ``delay`` seconds from now by the database clock, and ``retries_used`` n; the recorder
then adds an outbox entry whose message waits ``delay`` seconds in the broker's delay levels and
comes back to the job's queue, where a worker claims the due job. With no retry left the job
stays ``Failed`` (it has ended) until a person acts.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.catalog import Catalog
from orchestrator.filters import Election, JobFilter
from orchestrator.lifecycle import State
from orchestrator.retries import RetryPolicy

_DEFAULT = RetryPolicy()


class RetryFilter(JobFilter):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def policy(self, name: str) -> RetryPolicy:
        function = self._catalog.get(name)
        return function.spec.retry if function is not None else _DEFAULT

    def elect(self, election: Election) -> None:
        job = election.job
        if election.state is not State.FAILED or job.retries_used >= job.retries:
            return
        policy = self.policy(job.name)
        if not policy.retries(election.exception):
            return
        n = job.retries_used + 1
        override = _delays(job.options.get("retry_delays"))
        delay = policy.delay(n, override)
        message = election.values.get("error_message") or ""
        election.schedule(delay, f"Retry attempt {n} of {job.retries}: {message}"[:1000])
        election.values["retries_used"] = n
        election.data = {**(election.data or {}), "retry": n, "delay": delay}


def _delays(value: object) -> Sequence[float] | None:
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return value
    return None
