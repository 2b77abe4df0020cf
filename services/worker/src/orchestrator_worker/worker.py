"""The worker role: claims jobs from its queues, runs them, and records what happened.

It runs on :func:`orchestrator.loops.run_role` like the scheduler and the janitor (the same
presence, probes and stop), with no loops of its own: its start phase connects and starts
consuming, and its drain phase is the shutdown below, while the heartbeat (which renews the
leases of its running jobs) still beats. Its parts: the intake and the write rounds
(:mod:`orchestrator_worker.rounds`), the running jobs (:mod:`orchestrator_worker.running`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aio_pika.abc import AbstractRobustConnection

from orchestrator import composition, servers
from orchestrator.broker import Publisher, connect
from orchestrator.catalog import Catalog
from orchestrator.db import create_engine, db_now
from orchestrator.filters import Filters, JobFilter
from orchestrator.filters import load as load_filters
from orchestrator.loops import Ops, Phases, run_role
from orchestrator.outbox import OutboxSender
from orchestrator.presence import Presence
from orchestrator.settings import Settings
from orchestrator.store import registrations as store_registrations
from orchestrator.topology import Topology
from orchestrator_worker import cancellation, isolation
from orchestrator_worker.execution import Outcome
from orchestrator_worker.intake import Intake
from orchestrator_worker.progress import Progress
from orchestrator_worker.recorder import Bounds, Round
from orchestrator_worker.retrying import RetryFilter
from orchestrator_worker.rounds import Rounds
from orchestrator_worker.running import Claimant, Running, RunningJobs

log = logging.getLogger(__name__)
T = TypeVar("T")
#: Bound on each store step of a shutdown (last outcomes, the hand-back): a store that stopped
#: answering must not keep a stopping worker alive; its leases then expire as after a crash.
_SHUTDOWN_STEP_SECONDS = 10.0


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
        # Outcomes are elected by ``elections`` before they are written; the configured
        # filters' applied hooks see every move, after the built-in ones.
        self.transitions = composition.transitions(settings.job_retention, self.filters)
        self.shutdown_grace = shutdown_grace
        #: Called right after jobs still running at the end of the grace were handed back (the
        #: role's entry point ends the process there, so none of their code runs on); None
        #: (embedded in tests) closes normally.
        self._exit_process = exit_process
        #: Jobs handed back at the end of the grace while their code may still have been running.
        self.abandoned = 0
        self.info = servers.ServerInfo(
            role="worker",
            queues=list(settings.worker_queues),
            concurrency=settings.worker_concurrency,
        )
        self.topology = Topology.of(settings)
        self.progress = Progress()
        self.bounds = Bounds(settings.max_result_bytes, settings.traceback_max_chars)
        self.engine = create_engine(settings.database_url)
        #: Publishes what commits released (continuations, hand-backs) once connected.
        self.sender = OutboxSender(self.engine, None)
        claimant = Claimant(self.info.id, self.engine, self.transitions, self.sender)
        self.jobs = RunningJobs(
            settings, catalog, self.filters, claimant, record=self._record, released=self._released
        )
        round_ = Round(self.info.id, settings.lease, self.transitions, self.elections, self.bounds)
        self.rounds = Rounds(claimant, round_, self.progress, self.jobs)
        self._connection: AbstractRobustConnection | None = None
        #: Set once the worker consumes its queues.
        self.ready = asyncio.Event()

    @property
    def running(self) -> dict[uuid.UUID, Running]:
        return self.jobs.jobs

    @property
    def stopping(self) -> bool:
        """Set at the first stop signal: from then on no claimed job is started."""
        return self.jobs.stopping

    @property
    def intake(self) -> Intake:
        return self.rounds.intake

    async def run(self, stop: asyncio.Event, now: asyncio.Event | None = None) -> None:
        """Work until ``stop``; then shut down within the grace period, or at once on ``now``."""
        settings = self.settings
        # Leases are renewed with the heartbeat until the process ends, grace period and
        # hand-back included: a lease that lapsed while its job was still finishing would run
        # the job twice. A heartbeat the store took shows that this worker's writes move.
        presence = Presence(
            self.engine,
            self.info,
            settings.heartbeat_seconds,
            renew=self.jobs.renew_leases,
            written=self.progress.succeeded,
        )
        ops = Ops(settings.api_host, settings.worker_ops_port, self._readiness, self._liveness)
        at_once = now or asyncio.Event()
        phases = Phases(start=self._start, drain=lambda: self._drain(at_once))
        try:
            await run_role(presence, [], stop, ops=ops, phases=phases)
        finally:
            await self._close()

    async def _start(self, stop: asyncio.Event) -> None:
        await self._register()
        await asyncio.get_running_loop().run_in_executor(None, isolation.warm_up, self.catalog)
        self._connection = await self._connect(stop)
        if self._connection is None:
            return
        settings = self.settings
        intake = self.rounds.open_intake(
            self._connection, self.topology, settings.worker_queues, settings.worker_concurrency
        )
        self.sender.publisher = Publisher(
            self._connection, self.topology, settings.publish_timeout_seconds
        )
        self.sender.start()
        self.rounds.start()
        await intake.start()
        await cancellation.listen(self._connection, self.topology, self.jobs.cancel)
        self.ready.set()
        log.info("worker %s consuming %s", self.info.id, settings.worker_queues)

    async def _register(self) -> None:
        async with self.engine.begin() as conn:
            now = await db_now(conn)
            await store_registrations.save(conn, self.catalog.registrations(), now)

    async def _connect(self, stop: asyncio.Event) -> AbstractRobustConnection | None:
        while not stop.is_set():
            try:
                return await connect(self.settings.broker_urls, name=self.info.id)
            except Exception as exc:
                log.warning("RabbitMQ unreachable at start (%r); retrying in 2 s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
        return None

    def _record(self, outcome: Outcome) -> None:
        self.rounds.outcomes.submit(outcome)

    def _released(self) -> None:
        self.rounds.intake.release()

    async def _drain(self, now: asyncio.Event) -> None:
        await self._shutdown(now)
        await self.rounds.stop()
        # Before the ops server stops: the count is on /metrics while the rest closes.
        self._close_unsettled()

    async def _shutdown(self, now: asyncio.Event) -> None:
        """Start nothing more; running jobs see ``ctx.shutting_down`` and may finish within the
        grace period (leases still renewed); at its end, or on ``now``, hand back the rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_grace
        self.jobs.stopping = True
        for running in self.running.values():
            running.context.shutting_down.set()
        if self.rounds.has_intake:
            await self.intake.stop()
        # Claims already on their way are committed and handed back unstarted (see rounds).
        await _within(self.rounds.claims.drain(), deadline - loop.time(), now)
        waiting = [asyncio.ensure_future(r.done.wait()) for r in self.running.values()]
        if waiting:
            log.info("waiting up to %.0f s for %d running jobs", self.shutdown_grace, len(waiting))
            await _within(asyncio.wait(waiting), deadline - loop.time(), now)
            for future in waiting:
                future.cancel()
        # Outcomes of jobs that ended just now are committed, even when stopping at once.
        await _within(self.rounds.outcomes.drain(), _SHUTDOWN_STEP_SECONDS)
        # Deliveries no slot took are handed back through the outbox (bounded: store away).
        await _within(self.rounds.returns.drain(), _SHUTDOWN_STEP_SECONDS)
        leftover = list(self.running.values())
        if not leftover:
            return
        for running in leftover:
            # Before the kill: a child killed for the hand-back must not race it with a
            # ChildDiedError outcome (a failure, or a retry spent, for a job never at fault).
            running.handed_back = True
        # Children first: once handed back, the job may be claimed again at any moment.
        await loop.run_in_executor(None, isolation.kill_children)
        jobs = [r.job for r in leftover]
        reason = "Worker shut down before the job finished"
        # The publication is left to the relay: the process ends right after this commit, so
        # the job's next attempt can only start once none of this one's code runs any more.
        handed = await _within(
            self.jobs.give_back(jobs, reason, publish=self._exit_process is None),
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
        if not self.rounds.has_intake:
            return
        left = self.intake.close_unsettled()
        if left:
            log.warning(
                "%d deliveries were never settled; RabbitMQ requeues them as this worker "
                "closes its connection (counted towards their queue's delivery limit)",
                left,
            )

    async def _readiness(self) -> dict[str, bool]:
        # The store is checked first by run_role.
        broker_ok = self._connection is not None and not self._connection.is_closed
        # A round slower than a lease lets other workers take its jobs: not ready by then.
        writes_ok = self.progress.stuck_for() < self.settings.lease_seconds
        return {"broker": broker_ok, "writes": writes_ok}

    def _liveness(self) -> dict[str, bool]:
        return {"writes": self.progress.stuck_for() < self.settings.worker_stall_seconds}

    async def _close(self) -> None:
        # After a drain these were done already; after a failed start they are not.
        await self.rounds.stop()
        self._close_unsettled()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sender.stop(), self.settings.publish_timeout_seconds)
        # Every step is bounded: a broker or store that stopped answering must not keep a
        # stopping worker alive.
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), 5)
        self.jobs.close()
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
