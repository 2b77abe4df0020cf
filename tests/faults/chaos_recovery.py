"""Recovery after each fault of a chaos run, and the bound within which it must happen.

Each fault is judged by what it broke:

- a worker's kill -9 or SIGTERM: every attempt it cut off (one whose outcome never counted) runs
  again; *re-run* is the time until the last of them started again;
- the leading scheduler's: another scheduler holds the lease (*takeover*);
- the API's: a replacement answers ``/readyz`` (*api back*).

A fault that never recovers (no takeover, no API back, a cut-off attempt never run again) or
recovers only after its bound is a violation. The bounds are generous on purpose: each is the
sum of the settings the recovery waits on (the job lease and heartbeat, the lease-expiry loop,
the grace and the outbox relay, the scheduler lease's ttl and renewal) times :data:`LOADED`, plus
what the run itself allows for the slow parts: a stop (:data:`STOP_LIMIT`), a replacement API's
start (:data:`RETRY_FOR`, the clients' patience) and working off the queue's backlog ahead of a
re-enqueued job (``settle_seconds``). So a slow, loaded machine passes; a recovery that did not
happen, or hung, fails.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.settings import Settings
from orchestrator_scheduler.leadership import Leadership
from tests.faults.chaos_clients import RETRY_FOR
from tests.faults.chaos_fleet import STOP_LIMIT, Fault

if TYPE_CHECKING:
    from tests.faults.chaos import ChaosConfig, Run
    from tests.faults.chaos_checks import Attempt

#: How much longer than its settings' sum a recovery may take on a loaded 2-core machine (load
#: average 15-25: loops wake late, round trips and process starts take seconds, each step of a
#: recovery can stall).
LOADED = 4.0


def _default(name: str) -> float:
    return float(Settings.model_fields[name].default)


def _leadership(name: str) -> float:
    return float(inspect.signature(Leadership).parameters[name].default)


def recovery_limit(kind: str, config: ChaosConfig) -> float:
    """Seconds after the fault by which it must have recovered."""
    stopping = STOP_LIMIT if kind.startswith("SIGTERM") else 0.0
    if kind.endswith("worker"):
        # Killed: the cut-off job's lease lapses (a lease after its last renewal, up to a
        # heartbeat before the kill) and the expiry loop re-enqueues it. Stopped: handed back
        # at the end of the grace, published by the outbox relay (or, for a worker that did not
        # stop within STOP_LIMIT and was killed, its leases lapse). Then the job waits behind
        # the queue's backlog, which the run must work off within settle_seconds anyway.
        lapse = config.lease_seconds + config.heartbeat_seconds
        lapse += _default("lease_expiry_interval_seconds")
        relay = _default("outbox_relay_after_seconds") + _default("outbox_relay_interval_seconds")
        handed_back = config.shutdown_grace_seconds + relay if stopping else 0.0
        return stopping + max(lapse, handed_back) * LOADED + config.settle_seconds
    if kind.endswith("scheduler"):
        # A killed holder's lease lapses after its ttl; a stopped one releases it as it exits
        # (else it is killed at STOP_LIMIT and it lapses); the standby takes it at its next try.
        return stopping + (_leadership("ttl") + _leadership("renew_every")) * LOADED
    # The API: a replacement starts at once (a stopped API is waited for first, for its port).
    return stopping + RETRY_FOR


@dataclass
class Recovery:
    fault: str
    at_s: float
    target: str
    #: The bound it had to recover within (:func:`recovery_limit`).
    limit_s: float
    #: Attempts on the victim whose outcome did not count (cut off, handed back).
    orphans: int = 0
    #: Of those, attempts that never ran again.
    never_rerun: int = 0
    #: From the fault until the last orphan started again.
    rerun_s: float | None = None
    #: From the fault until a job acknowledged after it started.
    new_work_s: float | None = None
    #: The API's faults: until a replacement answered /readyz.
    api_back_s: float | None = None
    #: The leading scheduler's faults: until another scheduler held the lease.
    takeover_s: float | None = None
    #: Until starts per second came back to half of the 10 s before the fault.
    throughput_back_s: float | None = None

    @property
    def recovered_s(self) -> float | None:
        """The figure the fault is judged by (workers: None when nothing was cut off)."""
        if self.fault.endswith("worker"):
            return self.rerun_s
        return self.takeover_s if self.fault.endswith("scheduler") else self.api_back_s

    def problem(self) -> str | None:
        """Why this fault did not recover within its bound, if it did not."""
        what = f"{self.fault} of {self.target} at {self.at_s:.1f} s"
        if self.never_rerun:
            return f"{what}: {self.never_rerun} of {self.orphans} cut-off attempts never ran again"
        figure = self.recovered_s
        if figure is None and not self.fault.endswith("worker"):
            missing = "took the lease" if self.fault.endswith("scheduler") else "answered /readyz"
            return f"{what}: no replacement {missing} by the end of the run"
        if figure is not None and figure > self.limit_s:
            return f"{what}: recovered after {figure:.1f} s, limit {self.limit_s:.0f} s"
        return None


def recovery(
    run: Run, fault: Fault, attempts: dict[str, list[Attempt]], designed_to_fail: set[str]
) -> Recovery:
    result = Recovery(
        fault.kind,
        fault.at - run.load_began,
        fault.target,
        limit_s=recovery_limit(fault.kind, run.config),
    )
    starts = sorted(a.start for runs in attempts.values() for a in runs)
    result.throughput_back_s = _throughput_back(starts, fault.at)
    fresh = [
        attempts[s.job_id][0].start
        for s in run.ledger.sent
        if s.acked_at > fault.at and s.kind in ("plain", "keyed", "bulk") and attempts.get(s.job_id)
    ]
    result.new_work_s = min(fresh) - fault.at if fresh else None
    if fault.kind.endswith("worker"):
        count_reruns(result, fault, attempts, designed_to_fail)
    elif fault.kind.endswith("api"):
        victim = run.fleet.by_pid(fault.pid)
        gone = max(fault.at, victim.exited or fault.at) if victim is not None else fault.at
        ups = [t for t, up in run.watcher.api if up and t > gone]
        result.api_back_s = min(ups) - fault.at if ups else None
    else:
        takeovers = [
            t for t, pid in run.watcher.leaders if t > fault.at and pid not in (None, fault.pid)
        ]
        result.takeover_s = min(takeovers) - fault.at if takeovers else None
    return result


def count_reruns(
    result: Recovery,
    fault: Fault,
    attempts: dict[str, list[Attempt]],
    designed_to_fail: set[str],
) -> None:
    reruns = []
    for job_id, runs in attempts.items():
        nexts: list[Attempt | None] = [*runs[1:], None]
        for a, after in zip(runs, nexts, strict=True):
            # A designed failure that ended is retried by design, not cut off; an attempt that
            # ended and was the job's last counted.
            designed_retry = job_id in designed_to_fail and a.end is not None
            if a.pid != fault.pid or designed_retry or (after is None and a.end is not None):
                continue
            result.orphans += 1
            if after is None:
                result.never_rerun += 1
            else:
                reruns.append(after.start)
    result.rerun_s = max(reruns) - fault.at if reruns else None


def _throughput_back(starts: list[float], at: float, window: float = 2.0) -> float | None:
    before = sum(1 for t in starts if at - 10 <= t < at) / 10
    if before == 0:
        return None
    step = 0.0
    while at + step < (starts[-1] if starts else at):
        count = sum(1 for t in starts if at + step <= t < at + step + window)
        if count / window >= before / 2:
            return step
        step += 0.25
    return None
