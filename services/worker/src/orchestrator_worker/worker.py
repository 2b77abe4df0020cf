"""The worker role: claims jobs from its queues, runs them, and records what happened."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import catalog as catalog_store
from orchestrator import metrics, ops_server, outbox, servers
from orchestrator import outcomes as outcomes_rules
from orchestrator.batching import Batcher
from orchestrator.broker import Publisher, connect
from orchestrator.catalog import Catalog
from orchestrator.db import create_engine, db_now
from orchestrator.errors import JobInterrupted
from orchestrator.filters import Filters, JobFilter
from orchestrator.filters import load as load_filters
from orchestrator.jobs import JobContext
from orchestrator.settings import Settings
from orchestrator.states import State
from orchestrator.topology import Topology
from orchestrator_worker import cancellation, console, isolation
from orchestrator_worker.claims import (
    ClaimedJob,
    ClaimResult,
    decode,
    observe_started,
    republish,
)
from orchestrator_worker.execution import Limits, Outcome, execute, new_context
from orchestrator_worker.intake import Delivery, Intake
from orchestrator_worker.overruns import flag_overrunning
from orchestrator_worker.ownership import hand_back, renew_leases
from orchestrator_worker.progress import Progress
from orchestrator_worker.recorder import Bounds, Entered, Round, write_round
from orchestrator_worker.retrying import RetryFilter

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Bound on each store step of a shutdown (last outcomes, the hand-back): a store that stopped
#: answering must not keep a stopping worker alive; its leases then expire as after a crash.
_SHUTDOWN_STEP_SECONDS = 10.0


@dataclass
class Running:
    job: ClaimedJob
    context: JobContext
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set when the job stopped being this worker's (deleted, or its lease taken over).
    lost: bool = False


class Worker:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        *,
        shutdown_grace: float = 30.0,
        filters: Sequence[JobFilter] | None = None,
        exit_process: Callable[[], object] | None = None,
    ):
        self.settings = settings
        self.catalog = catalog
        # Filters: given here, else ORCHESTRATOR_FILTERS; elections start with retries.
        chosen = list(filters) if filters is not None else load_filters(settings.filters)
        self.filters = Filters(chosen)
        self.elections = Filters([RetryFilter(catalog), *chosen])
        self.shutdown_grace = shutdown_grace
        #: Called right after jobs still running at the end of the grace were handed back (the
        #: role's entry point ends the process there, so none of their code runs on); None
        #: (embedded in tests) closes normally.
        self._exit_process = exit_process
        #: Set at the first stop signal: from then on no claimed job is started.
        self.stopping = False
        #: Jobs handed back at the end of the grace while their code may still have been running.
        self.abandoned = 0
        self.info = servers.ServerInfo(
            role="worker",
            queues=list(settings.worker_queues),
            concurrency=settings.worker_concurrency,
        )
        self.topology = Topology.of(settings)
        self.running: dict[uuid.UUID, Running] = {}
        self._threads = ThreadPoolExecutor(settings.worker_concurrency, "job")
        # Claims and outcomes are written in two concurrent rounds, each many jobs per
        # transaction: a slow outcome round (a lock, a flush) never delays the next claims.
        self._claims: Batcher[Delivery | Outcome] = Batcher(self._write_batch, name="claims")
        self._outcomes: Batcher[Delivery | Outcome] = Batcher(self._write_batch, name="outcomes")
        #: Deliveries no slot could take, handed back through the outbox (see intake).
        self._returns: Batcher[Delivery] = Batcher(self._return_deliveries, name="returns")
        self._engine: AsyncEngine | None = None
        #: Publishes the continuations that recorded outcomes released (fast path).
        self._sender: outbox.OutboxSender | None = None
        self._connection: AbstractRobustConnection | None = None
        self._intake: Intake | None = None
        self._store_down = False
        self._store_watch: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.progress = Progress()
        self.bounds = Bounds(settings.max_result_bytes, settings.traceback_max_chars)
        #: Jobs whose outcome the store refused, while their failure is being recorded.
        self._refused: set[uuid.UUID] = set()
        #: Set once the worker consumes its queues.
        self.ready = asyncio.Event()

    @property
    def _round(self) -> Round:
        s = self.settings
        return Round(
            self.info.id, s.lease, s.job_retention, self.elections, self.filters, self.bounds
        )

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None
        return self._engine

    @property
    def intake(self) -> Intake:
        assert self._intake is not None
        return self._intake

    async def run(self, stop: asyncio.Event, now: asyncio.Event | None = None) -> None:
        """Work until ``stop``; then shut down within the grace period, or at once on ``now``."""
        self._engine = create_engine(self.settings.database_url)
        ops = await ops_server.serve(
            self.settings.api_host,
            self.settings.worker_ops_port,
            self._readiness,
            live=self._liveness,
        )
        try:
            await self._register()
            await asyncio.get_running_loop().run_in_executor(None, isolation.warm_up, self.catalog)
            self._connection = await self._connect(stop)
            if self._connection is None:
                return
            self._intake = Intake(
                self._connection,
                self.topology,
                self.settings.worker_queues,
                self.settings.worker_concurrency,
                self._claims.submit,
                self._returns.submit,
            )
            self._sender = outbox.OutboxSender(
                self.engine,
                Publisher(self._connection, self.topology, self.settings.publish_timeout_seconds),
            )
            self._sender.start()
            self._claims.start()
            self._outcomes.start()
            self._returns.start()
            await self.intake.start()
            await cancellation.listen(self._connection, self.topology, self._cancel)
            self.ready.set()
            log.info("worker %s consuming %s", self.info.id, self.settings.worker_queues)
            # Leases are renewed until the process ends, grace period and hand-back included:
            # a lease that lapsed while its job was still finishing would run the job twice.
            self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
            await stop.wait()
            await self._shutdown(now or asyncio.Event())
        finally:
            await self._close(ops)

    async def _register(self) -> None:
        async with self.engine.begin() as conn:
            now = await db_now(conn)
            await catalog_store.register(conn, self.catalog.registrations(), now)
        await servers.announce(self.engine, self.info)

    async def _connect(self, stop: asyncio.Event) -> AbstractRobustConnection | None:
        while not stop.is_set():
            try:
                return await connect(self.settings.broker_urls, name=self.info.id)
            except Exception as exc:
                log.warning("RabbitMQ unreachable at start (%r); retrying in 2 s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
        return None

    async def _write_batch(self, items: list[Delivery | Outcome]) -> None:
        """Record outcomes and claim deliveries, all of ``items`` in one transaction."""
        await self._write_round(items, alone=False)

    async def _write_round(self, items: list[Delivery | Outcome], *, alone: bool) -> None:
        """One transaction for ``items``. When the store refuses it while it answers, the
        round is split until the one item it refuses is found (``alone``: already retried on
        its own); everything else commits, so one job's poison never holds up another's."""
        outcomes = [i for i in items if isinstance(i, Outcome)]
        batch = decode([i for i in items if isinstance(i, Delivery)])
        try:
            with self.progress.round():
                async with self.engine.begin() as conn:
                    now = await db_now(conn)
                    recorded, pending = await write_round(conn, outcomes, batch, self._round, now)
        except Exception as exc:
            if await self._store_answers():
                await self._isolate(items, exc, alone=alone)
                return
            log.exception("writing to the store failed; will retry outcomes, return deliveries")
            self.progress.failed()
            await self._write_failed(batch, outcomes)
            return
        self.progress.succeeded()
        if self._sender is not None:
            self._sender.submit(pending)
        self._recorded(outcomes, recorded)
        observe_started(batch, now)
        await self._claimed(batch)

    async def _isolate(
        self, items: list[Delivery | Outcome], exc: Exception, *, alone: bool
    ) -> None:
        if len(items) > 1:
            log.warning(
                "the store refused a write round of %d items (%s); splitting it",
                len(items),
                _summary(exc),
            )
            middle = len(items) // 2
            await self._write_round(items[:middle], alone=False)
            await self._write_round(items[middle:], alone=False)
            return
        if not alone:  # once more on its own: a deadlock victim is not poison
            await self._write_round(items, alone=True)
            return
        (item,) = items
        if isinstance(item, Delivery):
            await self._refuse_delivery(item, exc)
        elif item.job.job_id in self._refused:
            self._quarantine(item, exc)
        else:
            await self._record_refusal(item, exc)

    async def _record_refusal(self, outcome: Outcome, exc: Exception) -> None:
        """The store refused this outcome: record the job's failure instead, naming why."""
        job = outcome.job
        why = _summary(exc)
        log.error("the store refused the outcome of job %s (%s); failing it", job.job_id, why)
        self._refused.add(job.job_id)
        failed = Outcome(
            job,
            False,
            error_type=outcomes_rules.OUTCOME_NOT_STORABLE,
            error_message=f"the store refused this job's outcome: {why}",
            duration=outcome.duration,
            # Permanent: the same outcome would be refused again.
            exception=outcomes_rules.ResultNotStorableError(why),
        )
        await self._write_round([failed], alone=True)
        self._refused.discard(job.job_id)

    def _quarantine(self, outcome: Outcome, exc: Exception) -> None:
        """Even the job's failure cannot be written. Stop holding it: its lease is no longer
        renewed, so the scheduler counts it as lost and fails it ("worker lost") after
        ``ORCHESTRATOR_WORKER_LOST_LIMIT`` runs, and this worker goes on with the others."""
        job = outcome.job
        log.error(
            "job %s quarantined: the store refuses even its failure (%s); its lease is left "
            "to expire",
            job.job_id,
            _summary(exc),
        )
        metrics.OUTCOMES_QUARANTINED.labels(job.queue, job.name).inc()
        self._finish(job)

    async def _refuse_delivery(self, delivery: Delivery, exc: Exception) -> None:
        """The store refuses to claim this delivery's job: dead-letter the message (the janitor
        records it and fails the job) rather than take it again and again."""
        log.error("the store refused a claim (%s); dead-lettering its message", _summary(exc))
        await self.intake.settle([delivery], reject=True)
        self.intake.release()

    async def _store_answers(self) -> bool:
        """Whether the store answers within 2 s (connecting included: a stalled store must
        not hang a probe)."""
        try:
            await asyncio.wait_for(self._select_one(), 2.0)
        except Exception:
            return False
        return True

    async def _select_one(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def _write_failed(self, batch: ClaimResult, outcomes: list[Outcome]) -> None:
        """The store did not take the round: its deliveries keep their slots, unacked, and are
        claimed again with its outcomes a second later (the intake pauses until the store
        answers). Nothing goes back to RabbitMQ: a return would count towards the delivery
        limit (see intake)."""
        # Decoded afresh: the failed round may have set some aside before it rolled back.
        fresh = decode([d for d, _ in batch.decoded] + batch.undecodable)
        await self._reject_undecodable(fresh)
        if fresh.decoded:
            self._pause_until_store_returns()
        await asyncio.sleep(1.0)
        for delivery, _ in fresh.decoded:
            self._claims.submit(delivery)
        for outcome in outcomes:
            self._outcomes.submit(outcome)

    async def _return_deliveries(self, deliveries: list[Delivery]) -> None:
        """Hand back deliveries no slot could take: their jobs' messages again through the
        outbox, then ack them; tried again a second later while the store is away."""
        batch = decode(deliveries)
        try:
            async with self.engine.begin() as conn:
                pending = await republish(conn, batch, await db_now(conn))
        except Exception:
            log.warning("handing %d deliveries back failed; again in 1 s", len(deliveries))
            await asyncio.sleep(1.0)
            for delivery in deliveries:
                self._returns.submit(delivery)
            return
        if self._sender is not None:
            self._sender.submit(pending)
        await self.intake.settle(batch.undecodable, reject=True)
        await self.intake.settle([delivery for delivery, _ in batch.decoded])
        sent = {entry.message.job_id for entry in pending}
        for delivery, job_id in batch.decoded:
            if job_id in sent:
                sent.discard(job_id)  # one message per job, however many copies came
                metrics.DELIVERIES_RETURNED.labels(delivery.queue, "republished").inc()
            else:
                # A stale copy (its job no longer waits for a message): dropped, not returned.
                metrics.CLAIMS_LOST.labels(delivery.queue).inc()

    async def _reject_undecodable(self, batch: ClaimResult) -> None:
        await self.intake.settle(batch.undecodable, reject=True)
        for _ in batch.undecodable:
            self.intake.release()

    async def _claimed(self, batch: ClaimResult) -> None:
        await self._reject_undecodable(batch)
        await self.intake.settle([delivery for delivery, _ in batch.decoded])
        started: set[uuid.UUID] = set()
        unstarted: list[ClaimedJob] = []
        for delivery, job_id in batch.decoded:
            job = batch.claimed.get(job_id)
            if job is None or job_id in started:
                metrics.CLAIMS_LOST.labels(delivery.queue).inc()
                self.intake.release()
                continue
            started.add(job_id)
            if self.stopping:
                # Claimed while the worker began to stop: never started, so handed back now.
                unstarted.append(job)
                self.intake.release()
                continue
            self._start(job)
        if unstarted:
            await self._give_back(unstarted, "Worker shut down before the job started")

    def _start(self, job: ClaimedJob) -> None:
        running = Running(job, new_context(job))
        self.running[job.job_id] = running
        metrics.JOBS_IN_FLIGHT.labels(job.queue).inc()
        running.task = asyncio.create_task(self._run_job(running), name=f"job-{job.job_id}")

    async def _run_job(self, running: Running) -> None:
        try:
            outcome = await self._execute(running)
        except asyncio.CancelledError:
            if running.lost:
                # The job was deleted (or claimed again elsewhere): nothing to record.
                self._finish(running.job)
                return
            raise
        if isinstance(outcome.exception, JobInterrupted):
            # The job asked to be run again later: not a failure, no retry spent.
            await self._give_back([running.job], "Job interrupted (JobInterrupted): run again")
            self._finish(running.job)
            return
        self._outcomes.submit(outcome)

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
            await flag_overrunning(self.engine, self.info.id, job)
        except Exception:
            log.exception("flagging job %s as overrunning failed", job.job_id)

    def _cancel(self, job_id: uuid.UUID) -> None:
        """Stop a job that is no longer this worker's: fire its token, cancel an async job.

        A sync job cannot be interrupted; it sees its token, and whatever it returns is refused
        by the outcome's compare-and-set, as the job is no longer Processing under this claim.
        """
        running = self.running.get(job_id)
        if running is None or running.lost:
            return
        running.lost = True
        running.context.cancelled.set()
        function = self.catalog.get(running.job.name)
        if function is not None and function.is_async and running.task is not None:
            running.task.cancel()
        log.info("job %s was deleted or taken over; stopping it", job_id)

    def _recorded(self, outcomes: list[Outcome], recorded: Mapping[object, Entered]) -> None:
        for outcome in outcomes:
            job = outcome.job
            entered = recorded.get(job.job_id)
            if entered is not None:
                state = entered.state
                console.report(outcome, state, entered.delay_seconds)
                # By the state entered: a result the store cannot hold made the job fail.
                succeeded = state is State.SUCCEEDED
                counter = metrics.JOBS_SUCCEEDED if succeeded else metrics.JOBS_FAILED
                counter.labels(job.queue, job.name).inc()
                metrics.JOB_DURATION.labels(job.queue, job.name).observe(outcome.duration)
                if state is State.SCHEDULED:
                    metrics.JOBS_RETRIED.labels(job.queue, job.name).inc()
            self._finish(job)

    def _finish(self, job: ClaimedJob) -> None:
        running = self.running.pop(job.job_id, None)
        if running is not None:
            running.done.set()
            metrics.JOBS_IN_FLIGHT.labels(job.queue).dec()
            self.intake.release()

    def _pause_until_store_returns(self) -> None:
        if self._store_down:
            return
        self._store_down = True
        self.intake.pause()
        self._store_watch = asyncio.create_task(self._wait_for_store(), name="store-watch")

    async def _wait_for_store(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                async with self.engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
            except Exception:  # noqa: S112 - still down
                continue
            log.info("store reachable again; resuming intake")
            self._store_down = False
            self.intake.resume()
            return

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await self._renew_leases()
                await servers.heartbeat(self.engine, self.info)
                self.progress.succeeded()  # the store takes this worker's writes
            except Exception:
                log.exception("heartbeat failed")

    async def _renew_leases(self) -> None:
        if not self.running:
            return
        mine = list(self.running)
        still_mine = await renew_leases(self.engine, self.info.id, mine, self.settings.lease)
        # A job no longer Processing under this worker was deleted or taken over; a missed
        # cancel signal is caught up here.
        for job_id in mine:
            if job_id not in still_mine and job_id in self.running:
                self._cancel(job_id)

    async def _shutdown(self, now: asyncio.Event) -> None:
        """Start nothing more; running jobs see ``ctx.shutting_down`` and may finish within the
        grace period (leases still renewed); at its end, or on ``now``, hand back the rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_grace
        self.stopping = True
        for running in self.running.values():
            running.context.shutting_down.set()
        if self._intake is not None:
            await self.intake.stop()
        # Claims already on their way are committed and handed back unstarted (``_claimed``).
        await _within(self._claims.drain(), deadline - loop.time(), now)
        waiting = [asyncio.ensure_future(r.done.wait()) for r in self.running.values()]
        if waiting:
            log.info("waiting up to %.0f s for %d running jobs", self.shutdown_grace, len(waiting))
            await _within(asyncio.wait(waiting), deadline - loop.time(), now)
            for future in waiting:
                future.cancel()
        # Outcomes of jobs that ended just now are committed, even when stopping at once.
        await _within(self._outcomes.drain(), _SHUTDOWN_STEP_SECONDS)
        # Deliveries no slot took are handed back through the outbox (bounded: store away).
        await _within(self._returns.drain(), _SHUTDOWN_STEP_SECONDS)
        leftover = list(self.running.values())
        if not leftover:
            return
        # Children first: once handed back, the job may be claimed again at any moment.
        await loop.run_in_executor(None, isolation.kill_children)
        jobs = [r.job for r in leftover]
        reason = "Worker shut down before the job finished"
        # The publication is left to the relay: the process ends right after this commit, so
        # the job's next attempt can only start once none of this one's code runs any more.
        handed = await _within(
            self._give_back(jobs, reason, publish=self._exit_process is None),
            _SHUTDOWN_STEP_SECONDS,
        )
        self.abandoned = len(leftover)
        if self._exit_process is not None:
            log.info("handed %d unfinished jobs back; exiting now", handed or 0)
            self._close_unsettled()  # nothing settles any more: the process ends here
            self._exit_process()
        for running in leftover:
            running.context.cancelled.set()
            if running.task is not None:
                running.task.cancel()

    def _close_unsettled(self) -> None:
        """Deliveries still unsettled now go back to their queues when the connection closes
        (RabbitMQ requeues them, counting towards the delivery limit): counted and logged."""
        if self._intake is None:
            return
        left = self.intake.close_unsettled()
        if left:
            log.warning(
                "%d deliveries were never settled; RabbitMQ requeues them as this worker "
                "closes its connection (counted towards their queue's delivery limit)",
                left,
            )

    async def _give_back(self, jobs: list[ClaimedJob], reason: str, *, publish: bool = True) -> int:
        """Hand ``jobs`` back to Enqueued without spending a retry; how many moved."""
        ids = [j.job_id for j in jobs]
        retention = self.settings.job_retention
        try:
            pending = await hand_back(
                self.engine, self.info.id, ids, retention, self.filters, reason=reason
            )
        except Exception:
            log.exception("handing %d jobs back failed; their leases will expire", len(ids))
            return 0
        if publish and self._sender is not None:
            self._sender.submit(pending)
        log.info("handed %d jobs back to their queues (%s)", len(pending), reason)
        return len(pending)

    async def _readiness(self) -> dict[str, bool]:
        store_ok = await self._store_answers()
        broker_ok = self._connection is not None and not self._connection.is_closed
        # A round slower than a lease lets other workers take its jobs: not ready by then.
        writes_ok = self.progress.stuck_for() < self.settings.lease_seconds
        return {"store": store_ok, "broker": broker_ok, "writes": writes_ok}

    def _liveness(self) -> dict[str, bool]:
        return {"writes": self.progress.stuck_for() < self.settings.worker_stall_seconds}

    async def _close(self, ops: ops_server.OpsServer | None) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self._claims.stop()
        await self._outcomes.stop()
        await self._returns.stop()
        # Before the ops server stops: the count is on /metrics while the rest closes.
        self._close_unsettled()
        if ops is not None:
            await ops.stop()
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sender.stop(), self.settings.publish_timeout_seconds)
        # Every step is bounded: a broker or store that stopped answering must not keep a
        # stopping worker alive.
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(servers.withdraw(self.engine, self.info), 5)
        self._threads.shutdown(wait=False, cancel_futures=True)
        await self.engine.dispose()


async def _within(
    step: Awaitable[T], timeout: float, interrupt: asyncio.Event | None = None
) -> T | None:
    """``step``'s result, or None once ``timeout`` has passed or ``interrupt`` is set first."""
    task = asyncio.ensure_future(step)
    waiting: set[asyncio.Future[Any]] = {task}
    stop = asyncio.ensure_future(interrupt.wait()) if interrupt is not None else None
    if stop is not None:
        waiting.add(stop)
    try:
        await asyncio.wait(waiting, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if stop is not None:
            stop.cancel()
    if task.done() and not task.cancelled() and task.exception() is None:
        return task.result()
    task.cancel()
    return None
def _summary(exc: Exception) -> str:
    """The store's own words, bounded: a driver error's text quotes the statement and its
    parameters (a whole result), which belong in neither a log line nor a job's error."""
    original = getattr(exc, "orig", None) or exc
    first = str(original).strip().splitlines() or [""]
    return outcomes_rules.clean_text(f"{type(original).__name__}: {first[0]}", 500) or ""
