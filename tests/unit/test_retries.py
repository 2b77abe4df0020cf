"""The retry policy (orchestrator.retries): how long before retry ``n``, which failures are worth
a re-run, and the retry election that turns a Failed outcome with a retry left into Scheduled.
Retries in a running worker are tests/retries/test_retries.py."""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator import outcomes
from orchestrator.errors import JobValidationError
from orchestrator.lifecycle import Election, State, StoredJob
from orchestrator.retries import RetryPolicy, elect_retry, hangfire_delay, parse_backoff

NOW = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("n", range(1, 11))
def test_hangfires_delay_grows_with_the_fourth_power_plus_jitter(n: int) -> None:
    delays = {hangfire_delay(n, random.Random(seed)) for seed in range(200)}
    base = (n - 1) ** 4 + 15
    assert min(delays) >= base and max(delays) <= base + 29 * n
    assert all((delay - base) % n == 0 for delay in delays)  # jitter·n
    assert len(delays) > 1


def test_the_same_seed_gives_the_same_delay() -> None:
    assert hangfire_delay(4, random.Random(7)) == hangfire_delay(4, random.Random(7))


@pytest.mark.parametrize(
    ("spec", "delays"),
    [
        ("fixed:5", [5, 5, 5, 5]),
        ("linear:2", [2, 4, 6, 8]),
        ("exponential:2", [2, 4, 8, 16]),
        ("exponential:2:10", [2, 4, 8, 10]),
        ("linear:1.5:4", [1.5, 3, 4, 4]),
    ],
)
def test_a_backoff_spec_computes_the_delays(spec: str, delays: list[float]) -> None:
    backoff = parse_backoff(spec)
    assert [backoff(n) for n in range(1, 5)] == delays


def test_a_callable_backoff_is_taken_as_it_is() -> None:
    def square(n: int) -> float:
        return float(n * n)

    assert parse_backoff(square) is square


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("quadratic:1", "expected 'fixed:S'"),
        ("fixed", "expected 'fixed:S'"),
        ("fixed:-1", "must not be negative"),
        ("linear:1:-5", "must not be negative"),
    ],
)
def test_a_bad_backoff_spec_is_named(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as refused:
        parse_backoff(spec)
    assert repr(spec) in str(refused.value)


def test_delays_or_backoff_not_both_and_never_negative() -> None:
    with pytest.raises(ValueError, match="not both"):
        RetryPolicy(retry_delays=(1,), backoff=parse_backoff("fixed:1"))
    with pytest.raises(ValueError, match="must not be negative"):
        RetryPolicy(retry_delays=(1, -2))


def test_listed_delays_are_used_in_order_and_the_last_repeats() -> None:
    policy = RetryPolicy(retry_delays=(1, 5, 60))
    assert [policy.delay(n) for n in range(1, 6)] == [1, 5, 60, 60, 60]


def test_an_enqueues_own_delays_win_over_the_policy() -> None:
    policy = RetryPolicy(backoff=parse_backoff("fixed:100"))
    assert policy.delay(1) == 100
    assert [policy.delay(n, [7, 8]) for n in (1, 2, 3)] == [7, 8, 8]


def test_delays_round_up_to_whole_seconds_and_are_clamped() -> None:
    assert RetryPolicy(retry_delays=(2.5,)).delay(1) == 3
    assert RetryPolicy(retry_delays=(0.2,)).delay(1) == 1
    assert RetryPolicy().delay(1, [1e308]) == outcomes.MAX_DELAY_SECONDS


def test_without_delays_or_backoff_the_delay_is_hangfires() -> None:
    assert 15 <= RetryPolicy().delay(1) <= 44
    assert 2**4 + 15 <= RetryPolicy().delay(3) <= 2**4 + 15 + 29 * 3


def test_which_failures_are_retried() -> None:
    every = RetryPolicy()
    assert every.retries(None)
    assert every.retries(RuntimeError("boom"))
    # No re-run fixes arguments that do not validate, or a result the store cannot hold.
    assert not every.retries(JobValidationError("bad argument"))
    assert not every.retries(outcomes.ResultNotStorableError("NaN"))
    only = RetryPolicy(retry_on=(ConnectionError,), no_retry_on=(ConnectionResetError,))
    assert only.retries(ConnectionRefusedError())
    assert not only.retries(ConnectionResetError())
    assert not only.retries(KeyError("x"))


def _failed(
    retries: int = 3,
    used: int = 0,
    message: str = "boom",
    exception: BaseException | None = None,
    options: Mapping[str, Any] | None = None,
) -> Election:
    job = StoredJob(
        uuid.uuid4(), "reports.build", "default", used + 1, retries, used, options or {}
    )
    return Election(
        job,
        State.FAILED,
        f"RuntimeError: {message}",
        NOW,
        values={"error_message": message},
        data={"attempt": used + 1},
        exception=exception or RuntimeError(message),
    )


def test_a_failure_with_a_retry_left_is_scheduled_for_the_retry() -> None:
    election = _failed(retries=3, used=1)
    elect_retry(election, RetryPolicy(retry_delays=(10, 20)))
    assert election.state is State.SCHEDULED
    assert election.reason == "Retry attempt 2 of 3: boom"
    assert election.delay_seconds == 20
    assert election.values["due_at"] == NOW + timedelta(seconds=20)
    assert election.values["scheduled_reason"] == "retry"
    assert election.values["retries_used"] == 2
    assert election.data == {"attempt": 2, "retry": 2, "delay": 20}


def test_a_failure_with_no_retry_left_stays_failed() -> None:
    election = _failed(retries=2, used=2)
    elect_retry(election, RetryPolicy(retry_delays=(1,)))
    assert election.state is State.FAILED
    assert "retries_used" not in election.values
    assert election.delay_seconds is None


def test_a_failure_the_policy_does_not_retry_stays_failed() -> None:
    election = _failed(exception=KeyError("missing"))
    elect_retry(election, RetryPolicy(retry_delays=(1,), no_retry_on=(KeyError,)))
    assert election.state is State.FAILED
    invalid = _failed(exception=JobValidationError("bad argument"))
    elect_retry(invalid, RetryPolicy(retry_delays=(1,)))
    assert invalid.state is State.FAILED


def test_a_success_is_never_touched() -> None:
    job = StoredJob(uuid.uuid4(), "reports.build", "default", 1, 3, 0, {})
    election = Election(job, State.SUCCEEDED, "Completed", NOW, values={"result": 1})
    elect_retry(election, RetryPolicy(retry_delays=(1,)))
    assert election.state is State.SUCCEEDED and election.values == {"result": 1}


def test_the_jobs_own_delays_win_and_bad_ones_are_ignored() -> None:
    own = _failed(options={"retry_delays": [7]})
    elect_retry(own, RetryPolicy(retry_delays=(100,)))
    assert own.delay_seconds == 7
    garbled = _failed(options={"retry_delays": ["soon"]})
    elect_retry(garbled, RetryPolicy(retry_delays=(100,)))
    assert garbled.delay_seconds == 100


def test_the_retry_reason_is_bounded() -> None:
    election = _failed(message="m" * 5000)
    elect_retry(election, RetryPolicy(retry_delays=(1,)))
    assert len(election.reason) == 1000
    assert election.reason.startswith("Retry attempt 1 of 3: mmm")
