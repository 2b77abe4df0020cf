"""The API's throttle of failed keys (orchestrator_api.throttle): a token bucket per client with a
bounded number of clients. Sign-ins through the API are tests/api/test_sessions.py."""

from __future__ import annotations

from orchestrator_api.throttle import FailureThrottle


def test_the_bucket_refills_at_its_rate() -> None:
    now = [1000.0]
    throttle = FailureThrottle(burst=2, per_minute=6, clock=lambda: now[0])
    throttle.failed("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 10
    assert throttle.retry_after("b") is None
    now[0] += 10
    assert throttle.retry_after("a") is None
    throttle.failed("a")
    assert throttle.retry_after("a") == 10
    small = FailureThrottle(burst=1, per_minute=60, max_clients=3, clock=lambda: now[0])
    for client in "wxyz":
        small.failed(client)
    assert small.retry_after("w") is None  # the oldest was dropped: memory stays bounded
    assert small.retry_after("z") == 1
