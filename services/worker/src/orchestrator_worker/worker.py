"""The worker role: claims jobs from its queues, runs them, and records what happened."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import sqlalchemy as sa
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import catalog as catalog_store
from orchestrator import metrics, ops_server, outbox, servers
from orchestrator.batching import Batcher
from orchestrator.broker import Publisher, connect
from orchestrator.catalog import Catalog
from orchestrator.db import create_engine, db_now
from orchestrator.filters import Filters, JobFilter
from orchestrator.filters import load as load_filters
from orchestrator.jobs import JobContext
from orchestrator.settings import Settings
from orchestrator.states import State
from orchestrator.topology import Topology
from orchestrator_worker import cancellation, isolation
from orchestrator_worker.claims import ClaimedJob, ClaimResult, decode, observe_started
from orchestrator_worker.execution import Limits, Outcome, execute, new_context
from orchestrator_worker.intake import Delivery, Intake, ack_batch
from orchestrator_worker.overruns import flag_overrunning
from orchestrator_worker.ownership import hand_back, renew_leases
from orchestrator_worker.recorder import Round, write_round
from orchestrator_worker.retrying import RetryFilter

log = logging.getLogger(__name__)


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
    ):
        self.settings = settings
        self.catalog = catalog
        # Filters: given here, else ORCHESTRATOR_FILTERS; elections start with retries.
        chosen = list(filters) if filters is not None else load_filters(settings.filters)
        self.filters = Filters(chosen)
        self.elections = Filters([RetryFilter(catalog), *chosen])
        self.shutdown_grace = shutdown_grace
        self.info = servers.ServerInfo(
            role="worker",
            queues=list(settings.worker_queues),
            concurrency=settings.worker_concurrency,
        )
        self.topology = Topology(settings.broker_namespace, settings.delivery_limit)
        self.running: dict[uuid.UUID, Running] = {}
        self._threads = ThreadPoolExecutor(settings.worker_concurrency, "job")
        # Claims and outcomes are written in two concurrent rounds, each many jobs per
        # transaction: a slow outcome round (a lock, a flush) never delays the next claims.
        self._claims: Batcher[Delivery | Outcome] = Batcher(self._write_batch, name="claims")
        self._outcomes: Batcher[Delivery | Outcome] = Batcher(self._write_batch, name="outcomes")
        self._engine: AsyncEngine | None = None
        #: Publishes the continuations that recorded outcomes released (fast path).
        self._sender: outbox.OutboxSender | None = None
        self._connection: AbstractRobustConnection | None = None
        self._intake: Intake | None = None
        self._store_down = False
        self._store_watch: asyncio.Task[None] | None = None
        #: Set once the worker consumes its queues.
        self.ready = asyncio.Event()

    @property
    def _round(self) -> Round:
        s = self.settings
        return Round(self.info.id, s.lease, s.job_retention, self.elections, self.filters)

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None
        return self._engine

    @property
    def intake(self) -> Intake:
        assert self._intake is not None
        return self._intake

    async def run(self, stop: asyncio.Event) -> None:
        self._engine = create_engine(self.settings.database_url)
        ops = await ops_server.serve(
            self.settings.api_host, self.settings.worker_ops_port, self._readiness
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
            )
            self._sender = outbox.OutboxSender(
                self.engine,
                Publisher(self._connection, self.topology, self.settings.publish_timeout_seconds),
            )
            self._sender.start()
            self._claims.start()
            self._outcomes.start()
            await self.intake.start()
            await cancellation.listen(self._connection, self.topology, self._cancel)
            self.ready.set()
            log.info("worker %s consuming %s", self.info.id, self.settings.worker_queues)
            heartbeat = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
            await stop.wait()
            heartbeat.cancel()
            await self._shutdown()
        finally:
            if ops is not None:
                ops.cancel()
            await self._close()

    async def _register(self) -> None:
        async with self.engine.begin() as conn:
            now = await db_now(conn)
            await catalog_store.register(conn, self.catalog.registrations(), now)
        await servers.announce(self.engine, self.info)

    async def _connect(self, stop: asyncio.Event) -> AbstractRobustConnection | None:
        while not stop.is_set():
            try:
                return await connect(self.settings.amqp_url, name=self.info.id)
            except Exception as exc:
                log.warning("RabbitMQ unreachable at start (%r); retrying in 2 s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
        return None

    async def _write_batch(self, items: list[Delivery | Outcome]) -> None:
        """Record outcomes and claim deliveries, all of ``items`` in one transaction."""
        outcomes = [i for i in items if isinstance(i, Outcome)]
        batch = decode([i for i in items if isinstance(i, Delivery)])
        try:
            async with self.engine.begin() as conn:
                now = await db_now(conn)
                recorded, pending = await write_round(conn, outcomes, batch, self._round, now)
        except Exception:
            log.exception("writing to the store failed; will retry outcomes, return deliveries")
            await self._write_failed(batch, outcomes)
            return
        if self._sender is not None:
            self._sender.submit(pending)
        self._recorded(outcomes, recorded)
        observe_started(batch, now)
        await self._claimed(batch)

    async def _write_failed(self, batch: ClaimResult, outcomes: list[Outcome]) -> None:
        for delivery, _ in batch.decoded:
            with contextlib.suppress(Exception):
                await delivery.message.nack(requeue=True)
            self.intake.release()
        await self._reject_undecodable(batch)
        if batch.decoded:
            self._pause_until_store_returns()
        if outcomes:
            await asyncio.sleep(1.0)
            for outcome in outcomes:
                self._outcomes.submit(outcome)

    async def _reject_undecodable(self, batch: ClaimResult) -> None:
        for delivery in batch.undecodable:
            with contextlib.suppress(Exception):
                await delivery.message.reject(requeue=False)
            self.intake.release()

    async def _claimed(self, batch: ClaimResult) -> None:
        await self._reject_undecodable(batch)
        await ack_batch([delivery for delivery, _ in batch.decoded])
        started: set[uuid.UUID] = set()
        for delivery, job_id in batch.decoded:
            job = batch.claimed.get(job_id)
            if job is None or job_id in started:
                metrics.CLAIMS_LOST.labels(delivery.queue).inc()
                self.intake.release()
                continue
            started.add(job_id)
            self._start(job)

    def _start(self, job: ClaimedJob) -> None:
        running = Running(job, new_context(job))
        self.running[job.job_id] = running
        metrics.JOBS_IN_FLIGHT.labels(job.queue).inc()
        running.task = asyncio.create_task(self._run_job(running), name=f"job-{job.job_id}")

    async def _run_job(self, running: Running) -> None:
        try:
            outcome = await execute(
                running.job,
                self.catalog,
                running.context,
                self._threads,
                self.settings.traceback_max_chars,
                self.filters,
                Limits(self.settings.timeout_grace_seconds, self._overrunning),
            )
        except asyncio.CancelledError:
            if running.lost:
                # The job was deleted (or claimed again elsewhere): nothing to record.
                self._finish(running.job)
                return
            raise
        self._outcomes.submit(outcome)

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

    def _recorded(self, outcomes: list[Outcome], recorded: Mapping[object, State]) -> None:
        for outcome in outcomes:
            job = outcome.job
            counter = metrics.JOBS_SUCCEEDED if outcome.succeeded else metrics.JOBS_FAILED
            if job.job_id in recorded:
                counter.labels(job.queue, job.name).inc()
                metrics.JOB_DURATION.labels(job.queue, job.name).observe(outcome.duration)
                if not outcome.succeeded and recorded[job.job_id] is State.SCHEDULED:
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

    async def _shutdown(self) -> None:
        """Stop taking work, let running jobs finish within the grace period, hand back the rest."""
        if self._intake is not None:
            await self.intake.stop()
        waiting = [r.done.wait() for r in self.running.values()]
        if waiting:
            log.info("waiting up to %.0f s for %d running jobs", self.shutdown_grace, len(waiting))
            await asyncio.wait(
                [asyncio.ensure_future(w) for w in waiting], timeout=self.shutdown_grace
            )
        await self._claims.drain()
        await self._outcomes.drain()
        leftover = list(self.running.values())
        for running in leftover:
            running.context.cancelled.set()
            if running.task is not None:
                running.task.cancel()
        if leftover:
            await self._hand_back([r.job for r in leftover])

    async def _hand_back(self, jobs: list[ClaimedJob]) -> None:
        ids = [j.job_id for j in jobs]
        retention = self.settings.job_retention
        pending = await hand_back(self.engine, self.info.id, ids, retention, self.filters)
        if self._sender is not None:
            self._sender.submit(pending)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sender.flush(), self.settings.publish_timeout_seconds)
        log.info("handed %d unfinished jobs back to their queues", len(pending))

    async def _readiness(self) -> dict[str, bool]:
        store_ok = True
        try:
            async with self.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(sa.text("SELECT 1")), 2.0)
        except Exception:
            store_ok = False
        broker_ok = self._connection is not None and not self._connection.is_closed
        return {"store": store_ok, "broker": broker_ok}

    async def _close(self) -> None:
        await self._claims.stop()
        await self._outcomes.stop()
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
