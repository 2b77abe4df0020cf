"""Retry policy: how long to wait before re-run ``n`` and which failures are worth a re-run.

The default is Hangfire's: ``(n-1)**4 + 15 + rand(0..29)·n`` seconds before retry ``n`` (about
16 s, 31 s, 1 min … 1.8 h for the tenth). ``@job(retry_delays=[…])`` lists the delays (the last
repeats), ``@job(backoff=…)`` computes them: a callable ``n -> seconds`` or a spec string
``"fixed:S"``, ``"linear:S"`` (S·n), ``"exponential:S"`` (S·2**(n-1)), each with an optional
``":MAX"`` cap. An enqueue's own ``retry_delays`` win over both. Delays round up to whole
seconds, because the broker's delay levels count whole seconds.

Failures that re-running cannot fix are never retried: arguments that do not validate and job
names the worker does not know (:class:`~orchestrator.errors.JobValidationError`).

:func:`elect_retry` is the retry decision itself, the first election of every outcome a worker
records (``orchestrator_worker``'s ``RetryFilter``) and of :mod:`orchestrator.testing`'s runs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from orchestrator import outcomes
from orchestrator.errors import JobValidationError
from orchestrator.lifecycle import Election, State

Backoff = Callable[[int], float]
ExceptionTypes = tuple[type[BaseException], ...]
#: Failures no re-run can fix.
PERMANENT: Final[ExceptionTypes] = (JobValidationError, outcomes.ResultNotStorableError)
_KINDS: Final[dict[str, Callable[[float, int], float]]] = {
    "fixed": lambda s, n: s,
    "linear": lambda s, n: s * n,
    "exponential": lambda s, n: s * 2 ** (n - 1),
}


def hangfire_delay(n: int, rng: random.Random | None = None) -> int:
    """Hangfire's delay before retry ``n`` (counted from 1), in seconds."""
    jitter = (rng or random).randint(0, 29)  # spreading retries, not security
    return (n - 1) ** 4 + 15 + jitter * n


def parse_backoff(spec: str | Backoff) -> Backoff:
    """A backoff callable from a callable or a spec string such as ``"exponential:2:3600"``."""
    if callable(spec):
        return spec
    kind, _, rest = spec.partition(":")
    if kind not in _KINDS or not rest:
        raise ValueError(
            f"backoff {spec!r}: expected 'fixed:S', 'linear:S' or 'exponential:S' "
            "(seconds), optionally ':MAX'"
        )
    step_text, _, cap_text = rest.partition(":")
    step, cap = float(step_text), float(cap_text) if cap_text else math.inf
    if step < 0 or cap < 0:
        raise ValueError(f"backoff {spec!r}: seconds must not be negative")
    grow = _KINDS[kind]
    return lambda n: min(cap, grow(step, n))


@dataclass(frozen=True)
class RetryPolicy:
    """A job's retry options (the number of retries itself is stored with each job)."""

    retry_delays: tuple[float, ...] | None = None
    backoff: Backoff | None = None
    #: Only failures of these types are retried (default: every exception) …
    retry_on: ExceptionTypes = (Exception,)
    #: … except these, never retried.
    no_retry_on: ExceptionTypes = ()

    def __post_init__(self) -> None:
        if self.retry_delays is not None and self.backoff is not None:
            raise ValueError("give retry_delays or backoff, not both")
        if any(d < 0 for d in self.retry_delays or ()):
            raise ValueError("retry_delays must not be negative")

    def delay(self, n: int, override: Sequence[float] | None = None) -> int:
        """Whole seconds to wait before retry ``n`` (counted from 1)."""
        delays = override or self.retry_delays
        if delays:
            seconds = delays[min(n, len(delays)) - 1]
        elif self.backoff is not None:
            seconds = self.backoff(n)
        else:
            seconds = hangfire_delay(n)
        return outcomes.delay_seconds(seconds)  # a per-enqueue delay may be 1e308

    def retries(self, exc: BaseException | None) -> bool:
        """Whether a failure with this exception may be retried (budget aside)."""
        if exc is None:
            return True
        if isinstance(exc, PERMANENT + self.no_retry_on):
            return False
        return isinstance(exc, self.retry_on)


def elect_retry(election: Election, policy: RetryPolicy) -> None:
    """A ``Failed`` outcome with a retry left, of an exception ``policy`` retries, becomes
    ``Scheduled`` (``scheduled_reason`` ``retry``) with reason ``Retry attempt n of N: <message>``,
    a due time ``delay`` seconds from now and ``retries_used`` n; its message then waits ``delay``
    seconds in the broker's delay levels. With no retry left the job stays ``Failed`` (it has
    ended) until a person acts. The job's own ``retry_delays`` (its enqueue's) win over the
    policy's."""
    job = election.job
    if election.state is not State.FAILED or job.retries_used >= job.retries:
        return
    if not policy.retries(election.exception):
        return
    n = job.retries_used + 1
    delay = policy.delay(n, _delays(job.options.get("retry_delays")))
    message = election.values.get("error_message") or ""
    election.schedule(delay, f"Retry attempt {n} of {job.retries}: {message}"[:1000])
    election.values["retries_used"] = n
    election.data = {**(election.data or {}), "retry": n, "delay": delay}


def _delays(value: object) -> Sequence[float] | None:
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return value
    return None
