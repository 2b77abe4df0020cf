"""Whether a worker's writes to the store still move, for its /readyz and /healthz.

A worker whose write rounds keep failing (the store refuses writes, or is gone) or hang (a lock
that is never released, a connection that stopped answering) takes no work and records nothing,
while its process looks fine. Readiness says so at once; liveness fails once it has lasted
``ORCHESTRATOR_WORKER_STALL_SECONDS``, so that Kubernetes restarts the worker.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Progress:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failing_since: float | None = None
        self._in_flight: dict[int, float] = {}
        self._ids = itertools.count()

    @contextmanager
    def round(self) -> Iterator[None]:
        """One write transaction in flight (claims and outcomes rounds run side by side)."""
        key = next(self._ids)
        self._in_flight[key] = self._clock()
        try:
            yield
        finally:
            del self._in_flight[key]

    def failed(self) -> None:
        """A write failed with the store unreachable (a refused item is isolated instead)."""
        if self._failing_since is None:
            self._failing_since = self._clock()

    def succeeded(self) -> None:
        """A write committed: the store takes this worker's writes again."""
        self._failing_since = None

    def stuck_for(self) -> float:
        """Seconds since writes last could move (0 while they do): the oldest write still in
        flight, or the first of the failures since the last commit."""
        now = self._clock()
        since = [*self._in_flight.values()]
        if self._failing_since is not None:
            since.append(self._failing_since)
        return max((now - t for t in since), default=0.0)
