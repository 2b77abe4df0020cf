"""Automatic retries, built as the first election filter of every worker.

The decision is :func:`orchestrator.retries.elect_retry` with the job's policy from this worker's
catalog: a ``Failed`` outcome with a retry left, of an exception the policy retries, becomes
``Scheduled`` (``scheduled_reason`` ``retry``) with a due time ``delay`` seconds from now by the
database clock; the recorder then adds an outbox entry whose message waits ``delay`` seconds in
the broker's delay levels and comes back to the job's queue, where a worker claims the due job.
With no retry left the job stays ``Failed`` (it has ended) until a person acts.
"""

from __future__ import annotations

from orchestrator.catalog import Catalog
from orchestrator.filters import Election, JobFilter
from orchestrator.retries import RetryPolicy, elect_retry

_DEFAULT = RetryPolicy()


class RetryFilter(JobFilter):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def policy(self, name: str) -> RetryPolicy:
        function = self._catalog.get(name)
        return function.spec.retry if function is not None else _DEFAULT

    def elect(self, election: Election) -> None:
        elect_retry(election, self.policy(election.job.name))
