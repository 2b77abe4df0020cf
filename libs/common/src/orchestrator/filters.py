"""Job filters: the one extension point, with hooks where a job is created, run and decided.

A filter is an object with any of these methods (subclass :class:`JobFilter` and override what
you need; the others do nothing)::

    class Audit(JobFilter):
        async def creating(self, context: Creating) -> None:    # API, before the job is stored
            if context.kwargs.get("user") == "mallory":
                context.refuse("mallory may not enqueue")       # 422, nothing stored
            context.parameters["tenant"] = "acme"               # kept with the job

        async def created(self, context: Created) -> None: ...  # API, after commit

        async def around(self, call_next, context: Performing) -> Any:  # worker, around the call
            started = time.monotonic()
            try:
                return await call_next()                        # the next filter, then the job
            finally:
                observe(time.monotonic() - started)

        def elect(self, election: Election) -> None:            # before a job changes state
            if election.state is State.FAILED and isinstance(election.exception, Gone):
                election.state = State.DELETED                  # replace the state to enter

        async def applied(self, context: Applied) -> None:      # after a change is written
            for row in context.rows:                            # inside its transaction
                audit(row.id, context.target)
            context.after_commit(lambda: count(context.target)) # once it commits

Filters are configured explicitly, never discovered: ``ORCHESTRATOR_FILTERS=module:factory,…``
(each factory is called once with no arguments and returns a filter), read when the API, a
worker or the scheduler starts, or passed as objects to ``create_app(settings, filters=…)``,
``Worker(settings, catalog, filters=…)`` and ``Scheduler(settings, filters=…)``. They run in the
order given; ``around`` filters nest (the first is outermost); each ``elect`` sees the state the
filters before it left.

**Elections** (``elect``) run inside the transaction of the change, before it is written:

* for the outcomes a worker records. The worker's chain starts with the built-in retry filter
  (``orchestrator_worker``'s ``RetryFilter``): a ``Failed`` outcome with a retry left becomes
  ``Scheduled`` (reason ``retry``), so a filter after it sees ``Failed`` only once no retry is
  left (or the failure is not retried);
* for a person's delete and requeue (API and dashboard), and the scheduler's promotions of due
  jobs and lease expiries. There ``election.source`` is the job's state, ``election.job`` a
  :class:`StoredJob` and ``exception`` None; a job elected into ``Enqueued`` gets its message, one
  elected into ``Scheduled`` (``election.schedule(…, why="delay")``) is promoted when due.

A replacement must be an allowed transition from the job's state (``lifecycle.ALLOWED``), else the
change fails with :class:`~orchestrator.errors.IllegalTransitionError` (409 through the API) and
nothing is written. Cost: with no election filter configured (the default) moves stay set-based
statements; with one, those moves are elected and written job by job. Claims, continuations
released by an ending (their fate follows the parent's) and the janitor's moves are not elected.

**Applied hooks** (``applied``) run after every state change (``orchestrator.transitions``), in
its transaction, with the rows moved, the target state and the connection
(:class:`~orchestrator.transitions.Applied`); ``after_commit`` defers work (counting) until the
commit, so a change rolled back is never counted. Every role's transitions run the built-in
hooks first, on every change whoever makes it (``orchestrator.composition``): continuations and
batch progress (``orchestrator.endings``), then counting (the per-hour state counters and
``orchestrator_state_changes_total``). Then the configured filters' hooks run, for the changes
made in the process they are configured in (API, worker, scheduler), including the
continuations an ending releases — shown before the ending itself, as the built-in hook
releasing them runs first.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import JobRefusedError
from orchestrator.jobs import JobContext

# Re-exported: a filter's author finds what its hooks receive here.
from orchestrator.lifecycle import Election as Election
from orchestrator.lifecycle import JobView as JobView
from orchestrator.lifecycle import State as State
from orchestrator.lifecycle import StoredJob as StoredJob
from orchestrator.transitions import Applied as Applied

CallNext = Callable[[], Awaitable[Any]]


@dataclass
class Creating:
    """A job about to be stored; ``parameters`` are kept with it (``options["parameters"]``)."""

    name: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        raise JobRefusedError(f"job {self.name!r} refused: {reason}")


@dataclass(frozen=True)
class Created:
    job_id: uuid.UUID
    name: str
    queue: str
    state: str
    parameters: Mapping[str, Any]


@dataclass
class Performing:
    job: JobView
    context: JobContext
    #: Free for filters to hand data to each other during one run.
    items: dict[str, Any] = field(default_factory=dict)


class JobFilter:
    """Base class of filters: every hook does nothing until overridden."""

    async def creating(self, context: Creating) -> None:
        return None

    async def created(self, context: Created) -> None:
        return None

    async def around(self, call_next: CallNext, context: Performing) -> Any:
        return await call_next()

    def elect(self, election: Election) -> None:
        return None

    async def applied(self, context: Applied) -> None:
        return None


class Filters:
    """An ordered list of filters and the ways to run each hook over all of them."""

    def __init__(self, filters: Sequence[JobFilter] = ()) -> None:
        self.items = list(filters)

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def elects(self) -> bool:
        """Whether any filter overrides ``elect`` (only then does a move go job by job)."""
        return any(type(item).elect is not JobFilter.elect for item in self.items)

    @property
    def watches(self) -> bool:
        """Whether any filter overrides ``applied`` (it then sees each change inside its
        transaction, so no move may commit before it ran)."""
        return any(type(item).applied is not JobFilter.applied for item in self.items)

    async def creating(self, context: Creating) -> None:
        for item in self.items:
            await item.creating(context)

    async def created(self, context: Created) -> None:
        for item in self.items:
            await item.created(context)

    async def perform(self, call: CallNext, context: Performing) -> Any:
        """Run ``call`` inside every ``around`` (the first filter outermost)."""
        chain = call
        for item in reversed(self.items):
            chain = _link(item, chain, context)
        return await chain()

    def elect(self, election: Election) -> None:
        for item in self.items:
            item.elect(election)

    async def applied(self, context: Applied) -> None:
        for item in self.items:
            await item.applied(context)


def _link(item: JobFilter, call_next: CallNext, context: Performing) -> CallNext:
    async def call() -> Any:
        return await item.around(call_next, context)

    return call


def load(specs: Sequence[str]) -> list[JobFilter]:
    """Filters from ``module:factory`` specs (``ORCHESTRATOR_FILTERS``), in order."""
    loaded = []
    for spec in specs:
        module_name, _, attribute = spec.partition(":")
        if not module_name or not attribute:
            raise ValueError(f"filter {spec!r}: expected 'module:factory'")
        factory = getattr(importlib.import_module(module_name), attribute)
        loaded.append(factory())
    return loaded
