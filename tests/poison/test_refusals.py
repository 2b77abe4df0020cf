"""A write the store refuses although everything was sanitised (here: a trigger that refuses one
job's rows, on each store) is found by splitting the worker's write round: that job alone is
failed (``OutcomeNotStorable``), quarantined when even its failure is refused, or, for a claim,
dead-lettered; every other job of the round commits and the worker goes on consuming."""

from __future__ import annotations

import uuid
from datetime import timedelta

import aio_pika
import sqlalchemy as sa

from orchestrator import composition, metrics
from orchestrator.db import create_engine, db_now
from orchestrator.settings import Settings
from orchestrator.topology import Topology
from orchestrator_scheduler.leases import expire_leases
from tests.poison import jobs
from tests.poison.conftest import enqueue, new_job, read, wait_all

GOOD = 6


async def _refuse(settings: Settings, job_id: uuid.UUID, when: str) -> None:
    """A trigger that refuses every update of ``job_id``'s row matching the SQL ``when``."""
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                await conn.execute(
                    sa.text(
                        "CREATE TRIGGER refuse BEFORE UPDATE ON jobs "
                        f"WHEN NEW.id = '{job_id.hex}' AND ({when}) "
                        "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
                    )
                )
                return
            await conn.execute(
                sa.text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.id = '{job_id}' AND ({when}) THEN "
                    "RAISE EXCEPTION 'refused by the test trigger'; END IF; RETURN NEW; END "
                    "$$ LANGUAGE plpgsql"
                )
            )
            await conn.execute(
                sa.text(
                    "CREATE TRIGGER refuse BEFORE UPDATE ON jobs FOR EACH ROW "
                    "EXECUTE FUNCTION refuse()"
                )
            )
    finally:
        await engine.dispose()


async def _held_with(settings: Settings, when: str) -> tuple[list[uuid.UUID], uuid.UUID]:
    good = [new_job("poison.held", "ok") for _ in range(GOOD)]
    poison = new_job("poison.held", "ok")
    await _refuse(settings, poison.id, when)
    mixed = [*good[: GOOD // 2], poison, *good[GOOD // 2 :]]
    await enqueue(settings, mixed)
    await wait_all(settings, [j.id for j in mixed], {"Processing"})
    jobs.RELEASE.set()
    await wait_all(settings, [j.id for j in good], {"Succeeded"})
    return [j.id for j in good], poison.id


async def _good_recorded_once(settings: Settings, ids: list[uuid.UUID]) -> None:
    for job_id in ids:
        row, history = await read(settings, job_id)
        assert (row.state, row.attempt) == ("Succeeded", 1)
        assert [h.state for h in history] == ["Enqueued", "Processing", "Succeeded"]


async def _still_consuming(settings: Settings) -> None:
    [later] = await enqueue(settings, [new_job("poison.ok", 7)])
    await wait_all(settings, [later], {"Succeeded"})


async def test_a_refused_outcome_fails_that_job_alone(start_worker, database_url):
    running = await start_worker(database_url)
    settings = running.settings
    good, poison = await _held_with(settings, "NEW.state = 'Succeeded'")
    await wait_all(settings, [poison], {"Failed"})
    await _good_recorded_once(settings, good)
    row, history = await read(settings, poison)
    assert (row.error_type, row.attempt) == ("OutcomeNotStorable", 1)
    assert row.error_message.startswith("the store refused this job's outcome: ")
    assert "refused by the test trigger" in row.error_message
    assert [h.state for h in history] == ["Enqueued", "Processing", "Failed"]
    await _still_consuming(settings)


async def test_an_outcome_refused_even_as_a_failure_is_quarantined(start_worker, database_url):
    running = await start_worker(database_url)
    settings = running.settings
    quarantined = metrics.OUTCOMES_QUARANTINED.labels("default", "poison.held")
    before = quarantined._value.get()
    # Refuses every outcome a worker writes for the job (it keeps worker_id), not the
    # scheduler's lease expiry (which clears it).
    when = "NEW.state <> 'Processing' AND NEW.worker_id IS NOT NULL"
    good, poison = await _held_with(settings, when)
    await _good_recorded_once(settings, good)
    await _still_consuming(settings)
    assert quarantined._value.get() == before + 1
    row, _ = await read(settings, poison)
    assert (row.state, row.attempt) == ("Processing", 1)  # no longer this worker's: not renewed
    assert poison not in running.worker.running
    # Its lease ends unrenewed: the scheduler's lease expiry counts it as lost and, at the
    # limit, fails it. It is not retried forever.
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            later = await db_now(conn) + timedelta(seconds=settings.lease_seconds + 1)
            transitions = composition.transitions(settings.job_retention)
            done = await expire_leases(conn, transitions, later, lost_limit=1)
    finally:
        await engine.dispose()
    assert done.failed == 1
    row, _ = await read(settings, poison)
    assert (row.state, row.error_type) == ("Failed", "WorkerLost")


async def test_a_refused_claim_dead_letters_that_message_alone(start_worker, database_url):
    running = await start_worker(database_url)
    settings = running.settings
    good = [new_job("poison.ok", i) for i in range(GOOD)]
    poison = new_job("poison.ok", 99)
    await _refuse(settings, poison.id, "NEW.state = 'Processing'")
    await enqueue(settings, [*good[:3], poison, *good[3:]])
    await wait_all(settings, [j.id for j in good], {"Succeeded"})
    await _good_recorded_once(settings, [j.id for j in good])
    dead = Topology(settings.broker_namespace).dead_letter_queue.name
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(dead, passive=True)
        message = await queue.get(timeout=5, fail=False)
        assert message is not None and str(poison.id).encode() in message.body
    finally:
        await connection.close()
    row, _ = await read(settings, poison.id)
    assert (row.state, row.attempt) == ("Enqueued", 0)  # the janitor fails it from the dead letter
    await _still_consuming(settings)
