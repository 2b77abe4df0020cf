"""The jobs a worker runs, from the commit of their claim to the record of their outcome.

A job starts once its claim committed, runs (in a thread, on the event loop, or in a child
process; see :mod:`orchestrator_worker.execution`), and its outcome goes to the outcomes round;
it is finished once that round recorded it. Meanwhile its lease is renewed with every heartbeat,
and a job that stopped being this worker's (deleted, or its lease taken over) is stopped.

A slot bounds the jobs *running* at once: it is free again as soon as a job's code returns and
its outcome waits for its round, so the next delivery runs while the outcome is written. At most
``concurrency`` outcomes wait so at once; beyond that a slot stays taken until its outcome is
recorded, so a store that writes slowly slows the intake instead of piling outcomes up. (Slots
held until the record made the drain of a backlog wait on the outcome rounds: 1,250 jobs/s with
64 slots, ~2,100 with 256, ~3,000 with 1,024, on the same machine.)
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import metrics
from orchestrator.catalog import Catalog
from orchestrator.errors import JobInterrupted
from orchestrator.filters import Filters
from orchestrator.jobs import JobContext
from orchestrator.lifecycle import State
from orchestrator.outbox import OutboxSender
from orchestrator.settings import Settings
from orchestrator.transitions import Transitions
from orchestrator_worker import console
from orchestrator_worker.claims import ClaimedJob
from orchestrator_worker.execution import Limits, Outcome, execute, new_context
from orchestrator_worker.overruns import flag_overrunning
from orchestrator_worker.ownership import hand_back, renew_leases
from orchestrator_worker.recorder import Entered

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimant:
    """The worker as its claims know it: its id, the store it writes to, the transitions its
    moves go through, and the sender that publishes what its commits released."""

    worker_id: str
    engine: AsyncEngine
    transitions: Transitions
    sender: OutboxSender


@dataclass
class Running:
    job: ClaimedJob
    context: JobContext
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when the job stopped being this worker's (deleted, or its lease taken over).
    lost: bool = False
    #: Set when the shutdown hands the job back at the end of the grace: how its run ends from
    #: then on (its process killed for the hand-back, say) is not recorded as its outcome.
    handed_back: bool = False


class RunningJobs:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        filters: Filters,
        claimant: Claimant,
        *,
        record: Callable[[Outcome], None],
        released: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.filters = filters
        self.claimant = claimant
        #: Where an outcome goes to be recorded (the outcomes round).
        self._record = record
        #: Told when a job's slot is free again (the intake takes another delivery).
        self._released = released
        self.jobs: dict[uuid.UUID, Running] = {}
        #: Jobs whose code returned, whose slot is free already, and whose outcome waits for
        #: its round (at most ``worker_concurrency`` of them; see the module's docstring).
        self.recording: set[uuid.UUID] = set()
        #: Set at the first stop signal: from then on no claimed job is started.
        self.stopping = False
        self._threads = ThreadPoolExecutor(settings.worker_concurrency, "job")

    def start(self, job: ClaimedJob) -> None:
        running = Running(job, new_context(job))
        self.jobs[job.job_id] = running
        metrics.JOBS_IN_FLIGHT.labels(job.queue).inc()
        running.task = asyncio.create_task(self._run(running), name=f"job-{job.job_id}")

    async def _run(self, running: Running) -> None:
        try:
            outcome = await self._execute(running)
        except asyncio.CancelledError:
            if running.lost:
                # The job was deleted (or claimed again elsewhere): nothing to record.
                self.finish(running.job)
                return
            raise
        if running.handed_back:
            self.finish(running.job)
            return
        if isinstance(outcome.exception, JobInterrupted):
            # The job asked to be run again later: not a failure, no retry spent.
            await self.give_back([running.job], "Job interrupted (JobInterrupted): run again")
            self.finish(running.job)
            return
        self._record(outcome)
        job_id = running.job.job_id
        if job_id in self.jobs and len(self.recording) < self.settings.worker_concurrency:
            self.recording.add(job_id)
            self._released()

    async def _execute(self, running: Running) -> Outcome:
        return await execute(
            running.job,
            self.catalog,
            running.context,
            self._threads,
            self.settings.traceback_max_chars,
            self.filters,
            Limits(self.settings.timeout_grace_seconds, self._overrunning),
        )

    async def _overrunning(self, job: ClaimedJob) -> None:
        try:
            await flag_overrunning(self.claimant.engine, self.claimant.worker_id, job)
        except Exception:
            log.exception("flagging job %s as overrunning failed", job.job_id)

    def cancel(self, job_id: uuid.UUID) -> None:
        """Stop a job that is no longer this worker's: fire its token, cancel an async job.

        A sync job cannot be interrupted; it sees its token, and whatever it returns is refused
        by the outcome's compare-and-set, as the job is no longer Processing under this claim.
        """
        running = self.jobs.get(job_id)
        if running is None or running.lost:
            return
        running.lost = True
        running.context.cancelled.set()
        function = self.catalog.get(running.job.name)
        if function is not None and function.is_async and running.task is not None:
            running.task.cancel()
        log.info("job %s was deleted or taken over; stopping it", job_id)

    def recorded(self, outcomes: list[Outcome], entered: Mapping[object, Entered]) -> None:
        """The outcomes round committed: report and count each recorded job, finish them all."""
        for outcome in outcomes:
            job = outcome.job
            recorded = entered.get(job.job_id)
            if recorded is not None:
                state = recorded.state
                console.report(outcome, state, recorded.delay_seconds)
                # By the state entered: a result the store cannot hold made the job fail.
                succeeded = state is State.SUCCEEDED
                counter = metrics.JOBS_SUCCEEDED if succeeded else metrics.JOBS_FAILED
                counter.labels(job.queue, job.name).inc()
                metrics.JOB_DURATION.labels(job.queue, job.name).observe(outcome.duration)
                if state is State.SCHEDULED:
                    metrics.JOBS_RETRIED.labels(job.queue, job.name).inc()
            self.finish(job)

    def finish(self, job: ClaimedJob) -> None:
        running = self.jobs.pop(job.job_id, None)
        if running is not None:
            running.done.set()
            metrics.JOBS_IN_FLIGHT.labels(job.queue).dec()
            if job.job_id in self.recording:
                self.recording.discard(job.job_id)  # its slot was freed when its code returned
            else:
                self._released()

    async def renew_leases(self) -> None:
        """Extend the leases of every running job (each heartbeat, until the process ends)."""
        if not self.jobs:
            return
        mine = list(self.jobs)
        still_mine = await renew_leases(
            self.claimant.engine, self.claimant.worker_id, mine, self.settings.lease
        )
        # A job no longer Processing under this worker was deleted or taken over; a missed
        # cancel signal is caught up here.
        for job_id in mine:
            if job_id not in still_mine and job_id in self.jobs:
                self.cancel(job_id)

    async def give_back(self, jobs: list[ClaimedJob], reason: str, *, publish: bool = True) -> int:
        """Hand ``jobs`` back to Enqueued without spending a retry; how many moved."""
        ids = [j.job_id for j in jobs]
        claimant = self.claimant
        try:
            pending = await hand_back(
                claimant.engine, claimant.transitions, claimant.worker_id, ids, reason=reason
            )
        except Exception:
            log.exception("handing %d jobs back failed; their leases will expire", len(ids))
            return 0
        if publish:
            claimant.sender.submit(pending)
        log.info("handed %d jobs back to their queues (%s)", len(pending), reason)
        return len(pending)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
