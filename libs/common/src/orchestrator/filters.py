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

        def elect(self, election: Election) -> None:            # worker, before the outcome
            if election.state is State.FAILED and isinstance(election.exception, Gone):
                election.state = State.DELETED                  # replace the state to enter

Filters are configured explicitly, never discovered: ``ORCHESTRATOR_FILTERS=module:factory,…``
(each factory is called once with no arguments and returns a filter), read when the API or a
worker starts, or passed as objects to ``create_app(settings, filters=…)`` and
``Worker(settings, catalog, filters=…)``. They run in the order given; ``around`` filters nest
(the first is outermost); each ``elect`` sees the state the filters before it left.

The worker's chain of election filters starts with the built-in retry filter
(``orchestrator_worker``'s ``RetryFilter``): a ``Failed`` outcome with a retry left becomes
``Scheduled`` (reason ``retry``). A filter configured after it therefore sees ``Failed`` only once
no retry is left (or the failure is not retried). Elections run inside the transaction that
records the outcome, for outcomes a worker records; a person's delete or requeue and the
scheduler's promotions are not elected. Continuations and batch progress are not filters on
purpose: they must follow every ending, whoever causes it, in the same transaction (see
``orchestrator.endings``), and metrics are counted after commit so an outcome whose transaction
failed is never counted; a filter can still count what it sees (``around`` for durations).
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from orchestrator.errors import JobRefusedError
from orchestrator.jobs import JobContext
from orchestrator.states import State

CallNext = Callable[[], Awaitable[Any]]


class JobView(Protocol):
    """What every worker-side hook may read about the job."""

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

    def schedule(self, delay_seconds: int, reason: str, *, why: str = "retry") -> None:
        """Enter ``Scheduled`` for ``delay_seconds``; the message goes through the delay levels."""
        self.state = State.SCHEDULED
        self.reason = reason
        self.delay_seconds = delay_seconds
        self.values["due_at"] = self.now + timedelta(seconds=delay_seconds)
        self.values["scheduled_reason"] = why


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


class Filters:
    """An ordered list of filters and the ways to run each hook over all of them."""

    def __init__(self, filters: Sequence[JobFilter] = ()) -> None:
        self.items = list(filters)

    def __bool__(self) -> bool:
        return bool(self.items)

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
