"""The worker's writes: claims and outcomes in rounds, many jobs per transaction.

Claims and outcomes are written in two concurrent rounds, so a slow outcome round (a lock, a
flush) never delays the next claims. Deliveries come from the intake; once their claims commit
they are acked and their jobs start (:mod:`orchestrator_worker.running`). A round the store
refuses while it answers is split until the one item it refuses is found; a round that fails
because the store is away is held and tried again once it answers, the intake paused meanwhile.
Deliveries no slot could take are handed back through the outbox.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from aio_pika.abc import AbstractRobustConnection

from orchestrator import metrics
from orchestrator import outcomes as outcomes_rules
from orchestrator.batching import Batcher
from orchestrator.db import db_now
from orchestrator.presence import store_reachable
from orchestrator.topology import Topology
from orchestrator_worker.claims import ClaimedJob, ClaimResult, decode, observe_started, republish
from orchestrator_worker.execution import Outcome
from orchestrator_worker.intake import Delivery, Intake
from orchestrator_worker.progress import Progress
from orchestrator_worker.recorder import Round, claim_alone, claims_alone, write_round
from orchestrator_worker.running import Claimant, RunningJobs

log = logging.getLogger(__name__)


class Rounds:
    def __init__(
        self, claimant: Claimant, round_: Round, progress: Progress, jobs: RunningJobs
    ) -> None:
        self.claimant = claimant
        self.round = round_
        self.progress = progress
        self.jobs = jobs
        self.claims: Batcher[Delivery | Outcome] = Batcher(self._write_batch, name="claims")
        self.outcomes: Batcher[Delivery | Outcome] = Batcher(self._write_batch, name="outcomes")
        #: Deliveries no slot could take, handed back through the outbox (see intake).
        self.returns: Batcher[Delivery] = Batcher(self._return_deliveries, name="returns")
        self._intake: Intake | None = None
        self._store_down = False
        self._store_watch: asyncio.Task[None] | None = None
        #: Jobs whose outcome the store refused, while their failure is being recorded.
        self._refused: set[uuid.UUID] = set()
        #: Rounds of claims alone are one statement each (see recorder.claims_alone).
        self._claims_alone = claims_alone(round_, claimant.engine)

    @property
    def intake(self) -> Intake:
        assert self._intake is not None
        return self._intake

    @property
    def has_intake(self) -> bool:
        return self._intake is not None

    def open_intake(
        self,
        connection: AbstractRobustConnection,
        topology: Topology,
        queues: Sequence[str],
        concurrency: int,
    ) -> Intake:
        """The intake whose deliveries these rounds claim (started by the caller)."""
        self._intake = Intake(
            connection, topology, queues, concurrency, self.claims.submit, self.returns.submit
        )
        return self._intake

    def start(self) -> None:
        self.claims.start()
        self.outcomes.start()
        self.returns.start()

    async def stop(self) -> None:
        await self.claims.stop()
        await self.outcomes.stop()
        await self.returns.stop()

    async def _write_batch(self, items: list[Delivery | Outcome]) -> None:
        """Record outcomes and claim deliveries, all of ``items`` in one transaction."""
        await self._write_round(items, alone=False)

    async def _write_round(
        self, items: list[Delivery | Outcome], *, alone: bool, in_transaction: bool = False
    ) -> None:
        """One transaction for ``items``. When the store refuses it while it answers, the
        round is split until the one item it refuses is found (``alone``: already retried on
        its own); everything else commits, so one job's poison never holds up another's.
        A round of claims alone is one statement when it may be (``in_transaction``: not)."""
        outcomes = [i for i in items if isinstance(i, Outcome)]
        deliveries = [i for i in items if isinstance(i, Delivery)]
        if not outcomes and not in_transaction and self._claims_alone:
            await self._claim_alone(deliveries, alone=alone)
            return
        batch = decode(deliveries)
        try:
            with self.progress.round():
                async with self.claimant.engine.begin() as conn:
                    now, recorded, pending = await write_round(conn, outcomes, batch, self.round)
        except Exception as exc:
            await self._round_failed(items, batch, outcomes, exc, alone=alone)
            return
        self.progress.succeeded()
        self.claimant.sender.submit(pending)
        self.jobs.recorded(outcomes, recorded)
        observe_started(batch, now)
        await self._claimed(batch)

    async def _claim_alone(self, deliveries: list[Delivery], *, alone: bool) -> None:
        """Claims with no outcome: one statement that commits on its own (the enqueue→start
        path: one round trip instead of a transaction's six). Deliveries whose job it did not
        claim (rare: a duplicate, a deleted job, an early retry) then go through a round in a
        transaction, which sorts them out (dead letter, message sent round the delay levels
        again, lost claim) before any of them is acked."""
        batch = decode(deliveries)
        try:
            with self.progress.round():
                now = await claim_alone(self.claimant.engine, batch, self.round)
        except Exception as exc:
            await self._round_failed(list(deliveries), batch, [], exc, alone=alone)
            return
        self.progress.succeeded()
        rest: list[Delivery | Outcome] = [d for d, j in batch.decoded if j not in batch.claimed]
        batch.decoded[:] = [(d, j) for d, j in batch.decoded if j in batch.claimed]
        if now is not None:
            observe_started(batch, now)
        await self._claimed(batch)
        if rest:
            await self._write_round(rest, alone=alone, in_transaction=True)

    async def _round_failed(
        self,
        items: list[Delivery | Outcome],
        batch: ClaimResult,
        outcomes: list[Outcome],
        exc: Exception,
        *,
        alone: bool,
    ) -> None:
        if await store_reachable(self.claimant.engine):
            await self._isolate(items, exc, alone=alone)
            return
        log.exception("writing to the store failed; will retry outcomes, return deliveries")
        self.progress.failed()
        await self._write_failed(batch, outcomes)

    async def _isolate(
        self, items: list[Delivery | Outcome], exc: Exception, *, alone: bool
    ) -> None:
        if len(items) > 1:
            log.warning(
                "the store refused a write round of %d items (%s); splitting it",
                len(items),
                summary(exc),
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
        why = summary(exc)
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
            summary(exc),
        )
        metrics.OUTCOMES_QUARANTINED.labels(job.queue, job.name).inc()
        self.jobs.finish(job)

    async def _refuse_delivery(self, delivery: Delivery, exc: Exception) -> None:
        """The store refuses to claim this delivery's job: dead-letter the message (the janitor
        records it and fails the job) rather than take it again and again."""
        log.error("the store refused a claim (%s); dead-lettering its message", summary(exc))
        await self.intake.settle([delivery], reject=True)
        self.intake.release()

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
            self.claims.submit(delivery)
        for outcome in outcomes:
            self.outcomes.submit(outcome)

    async def _return_deliveries(self, deliveries: list[Delivery]) -> None:
        """Hand back deliveries no slot could take: their jobs' messages again through the
        outbox, then ack them; tried again a second later while the store is away."""
        batch = decode(deliveries)
        try:
            async with self.claimant.engine.begin() as conn:
                pending = await republish(conn, batch, await db_now(conn))
        except Exception:
            log.warning("handing %d deliveries back failed; again in 1 s", len(deliveries))
            await asyncio.sleep(1.0)
            for delivery in deliveries:
                self.returns.submit(delivery)
            return
        self.claimant.sender.submit(pending)
        # Counted once committed: the messages are sent again whatever the acks below meet.
        sent = {entry.message.job_id for entry in pending}
        for delivery, job_id in batch.decoded:
            if job_id in sent:
                sent.discard(job_id)  # one message per job, however many copies came
                metrics.DELIVERIES_RETURNED.labels(delivery.queue, "republished").inc()
            else:
                # A stale copy (its job no longer waits for a message): dropped, not returned.
                metrics.CLAIMS_LOST.labels(delivery.queue).inc()
        await self.intake.settle(batch.undecodable, reject=True)
        await self.intake.settle([delivery for delivery, _ in batch.decoded])

    async def _reject_undecodable(self, batch: ClaimResult) -> None:
        await self.intake.settle(batch.undecodable, reject=True)
        for _ in batch.undecodable:
            self.intake.release()

    async def _claimed(self, batch: ClaimResult) -> None:
        """Start the jobs the round claimed, then settle every delivery of the round: each
        claim has committed, so the acks need not wait before the jobs start (an ack that
        fails leaves a copy whose claim is lost)."""
        started: set[uuid.UUID] = set()
        unstarted: list[ClaimedJob] = []
        freed = 0
        for delivery, job_id in batch.decoded:
            job = batch.claimed.get(job_id)
            if job is None or job_id in started:
                metrics.CLAIMS_LOST.labels(delivery.queue).inc()
                freed += 1
                continue
            started.add(job_id)
            if self.jobs.stopping:
                # Claimed while the worker began to stop: never started, so handed back now.
                unstarted.append(job)
                freed += 1
                continue
            self.jobs.start(job)
        await self._reject_undecodable(batch)
        await self.intake.settle([delivery for delivery, _ in batch.decoded])
        for _ in range(freed):
            self.intake.release()
        if unstarted:
            await self.jobs.give_back(unstarted, "Worker shut down before the job started")

    def _pause_until_store_returns(self) -> None:
        if self._store_down:
            return
        self._store_down = True
        self.intake.pause()
        self._store_watch = asyncio.create_task(self._wait_for_store(), name="store-watch")

    async def _wait_for_store(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if not await store_reachable(self.claimant.engine):
                continue  # still down
            log.info("store reachable again; resuming intake")
            self._store_down = False
            self.intake.resume()
            return


def summary(exc: Exception) -> str:
    """The store's own words, bounded: a driver error's text quotes the statement and its
    parameters (a whole result), which belong in neither a log line nor a job's error."""
    original = getattr(exc, "orig", None) or exc
    first = str(original).strip().splitlines() or [""]
    return outcomes_rules.clean_text(f"{type(original).__name__}: {first[0]}", 500) or ""
