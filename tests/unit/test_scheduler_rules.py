"""The scheduler's rules of time, with a clock of the test's own: the relay's backoff, the lease
expiry's outage guard, the reconcile pass's interval, recurring runs' misfire policies and the
promoter's sleep. Their loops on real stores are in tests/recovery, tests/recurring and
tests/scheduling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator_scheduler.leases import OutageGuard
from orchestrator_scheduler.promotion import sleep_for
from orchestrator_scheduler.reconcile import pass_interval
from orchestrator_scheduler.recurring import GRACE, choose_runs
from orchestrator_scheduler.relay import Backoff

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


class Clock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_from_its_base_up_to_its_cap() -> None:
    clock = Clock()
    backoff = Backoff(1.0, 30.0, clock)
    assert backoff.ready()
    assert [backoff.failed() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    clock.now = 29.9
    assert not backoff.ready()
    clock.now = 30.0
    assert backoff.ready()
    backoff.succeeded()
    assert backoff.failed() == 1


def test_the_outage_guard_holds_back_for_one_lease_after_a_silence() -> None:
    clock = Clock(1000.0)
    guard = OutageGuard(30.0, silence=5.0, clock=clock)
    for _ in range(10):  # steady contact every 2 s: never held back
        clock.now += 2.0
        guard.contact(True)
        assert not guard.holding()
    for _ in range(20):  # 40 s of failed round trips
        clock.now += 2.0
        guard.contact(False)
        assert not guard.holding()
    clock.now += 2.0
    guard.contact(True)
    assert guard.holding()
    for _ in range(14):  # 29 s more of steady contact: still within one lease of its return
        clock.now += 2.0
        guard.contact(True)
        assert guard.holding()
    clock.now += 2.0
    guard.contact(True)
    assert not guard.holding()


def test_a_scheduler_that_could_not_reach_the_store_at_start_holds_back() -> None:
    clock = Clock(1000.0)
    guard = OutageGuard(30.0, silence=5.0, clock=clock)
    clock.now += 60.0
    guard.contact(True)
    assert guard.holding()


def test_the_pass_interval_follows_the_threshold() -> None:
    assert pass_interval(300) == 30
    assert pass_interval(3600) == 30
    assert pass_interval(2) == 1


def test_an_occurrence_a_little_late_is_on_time_under_every_policy() -> None:
    due = [T0, T0 + timedelta(seconds=1)]
    now = due[-1] + GRACE / 2
    for misfire in ("relaxed", "strict", "ignore"):
        assert choose_runs(misfire, due, now) == due
    assert choose_runs("ignore", due, T0 + timedelta(hours=1)) == []


def test_sleep_is_bounded() -> None:
    assert sleep_for(None, T0, 5.0) == 5.0
    assert sleep_for(T0 + timedelta(seconds=1.25), T0, 5.0) == 1.25
    assert sleep_for(T0 + HOUR, T0, 5.0) == 5.0
    assert sleep_for(T0 - HOUR, T0, 5.0) == 0.0
