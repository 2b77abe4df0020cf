"""Counting stop signals per person, not per process: the rule every role and ``orchestrator dev``
follow. The first SIGTERM/SIGINT asks for a graceful stop; a second one asks for a stop at once,
unless it comes within ``SAME_PERSON_SECONDS`` of the first: in ``orchestrator dev`` a Ctrl-C
reaches every role twice (from the terminal and forwarded by the supervisor), and that echo is
not a second request. Plain logic, no imports: the CLI uses it too."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

SAME_PERSON_SECONDS = 1.0


class Request(Enum):
    NONE = "none"  #: the echo of the first signal
    GRACEFUL = "graceful"
    AT_ONCE = "at once"


class SignalCount:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._first: float | None = None

    def received(self) -> Request:
        at = self._clock()
        if self._first is None:
            self._first = at
            return Request.GRACEFUL
        if at - self._first >= SAME_PERSON_SECONDS:
            return Request.AT_ONCE
        return Request.NONE
