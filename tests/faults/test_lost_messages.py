"""(i) Confirmed messages deleted from their queue (a purge): the active scheduler's
reconciliation publishes them again and every job runs, once."""

from __future__ import annotations

import asyncio
import re
import time

import aio_pika
import httpx
import pytest

from tests.faults.amqp import queue_depth
from tests.faults.conftest import SystemFactory
from tests.faults.harness import free_port, wait_until
from tests.faults.scenario import Effects, Outcome, enqueue_effects, wait_for_states

pytestmark = pytest.mark.e2e

N_JOBS = 60
REPUBLISH_AFTER = 2.0


def _purge(url: str, queue: str) -> int:
    async def run() -> int:
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            return int((await declared.purge()).message_count)
        finally:
            await connection.close()

    return asyncio.run(run())


def _republished(ops_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{ops_port}/metrics", timeout=5).text
    found = re.search(r'^orchestrator_jobs_republished_total\{queue="default"\} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


def _outbox_empty(database_url: str) -> bool:
    import sqlalchemy as sa

    from orchestrator.db import create_engine
    from orchestrator.models import OutboxEntry

    async def count() -> int:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                table = OutboxEntry.__table__  # type: ignore[attr-defined]
                query = sa.select(sa.func.count()).select_from(table)
                return int((await conn.execute(query)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count()) == 0


def test_purged_messages_are_republished_and_every_job_runs_once(
    make_system: SystemFactory, postgres_url: str, amqp_url: str, effects: Effects
) -> None:
    ops_port = free_port()
    system = make_system(
        postgres_url,
        amqp_url,
        ORCHESTRATOR_REPUBLISH_AFTER_SECONDS=str(REPUBLISH_AFTER),
        ORCHESTRATOR_SCHEDULER_OPS_PORT=str(ops_port),
    )
    work_queue = f"{system.namespace}.q.default"
    system.start("api", "api")
    system.wait_for_api()
    # A worker registers the catalog, then goes: no worker runs while the messages are lost.
    system.start("registrar", "worker")
    system.wait_for_catalog("faults.effect")
    system.stop("registrar")

    ids = enqueue_effects(system.api_url, effects.directory, N_JOBS)
    wait_until(lambda: _outbox_empty(postgres_url), 30, "every publication confirmed")
    assert queue_depth(amqp_url, work_queue) == N_JOBS
    assert _purge(amqp_url, work_queue) == N_JOBS
    assert queue_depth(amqp_url, work_queue) == 0

    started = time.monotonic()
    system.start("scheduler", "scheduler")
    system.start("worker", "worker", "--concurrency", "8")
    states = wait_for_states(postgres_url, ids, ("Succeeded", "Failed"), timeout=120)
    recovery = time.monotonic() - started
    republished = _republished(ops_port)
    outcome = Outcome.measure(
        "i-messages-purged", f"{N_JOBS} confirmed messages purged from their queue, no worker "
        f"running; scheduler (republish after {REPUBLISH_AFTER:.0f} s) and worker started",
        ids, states, effects, recovery, republished=int(republished),
    )  # fmt: skip
    outcome.report()
    assert outcome.lost == 0 and outcome.stuck == 0, system.log_of("scheduler")[-3000:]
    assert outcome.completed == N_JOBS
    assert outcome.ran_twice == 0 and outcome.effect_twice == 0
    # Every job needed its copy; a few more copies may race a claim in flight (dropped).
    assert republished >= N_JOBS
