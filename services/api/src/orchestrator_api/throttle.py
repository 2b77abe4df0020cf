"""Failed sign-ins and unknown bearer keys, throttled per client: a token bucket each.

Every failure takes a token; tokens come back at a steady rate up to the burst. A client with
no token left is answered 429 with Retry-After *before* its credential is looked at, so a guess
made then learns nothing. The buckets live in each API process (with N replicas a client gets
N buckets, still a fixed rate); at most ``max_clients`` are kept, the least recently failed
dropped first, so spraying addresses cannot grow memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class FailureThrottle:
    def __init__(
        self,
        burst: int,
        per_minute: float,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = float(burst)
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self.clock = clock
        #: client -> (tokens, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _tokens(self, client: str, now: float) -> float:
        bucket = self._buckets.get(client)
        if bucket is None:
            return self.burst
        tokens, since = bucket
        return min(self.burst, tokens + (now - since) * self.rate)

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        tokens = self._tokens(client, self.clock())
        if tokens >= 1:
            return None
        return max(1, math.ceil((1 - tokens) / self.rate))

    def failed(self, client: str) -> None:
        now = self.clock()
        tokens = max(0.0, self._tokens(client, now) - 1)
        self._buckets[client] = (tokens, now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
