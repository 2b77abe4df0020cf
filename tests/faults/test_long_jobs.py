"""Long jobs (issue 4, point 8): a job running longer than RabbitMQ's consumer timeout runs once
to completion, neither redelivered nor its channel closed, because the worker acks at claim.

The private broker's ``consumer_timeout`` is 60 s (the smallest that 3.10 enforces; it checks
about once a minute). A control consumer that holds one message unacked over the same period
must lose its channel, which proves the timeout is really in force on this broker.
"""

from __future__ import annotations

import asyncio
import threading
import time

import aio_pika
import pytest

from tests.faults.conftest import CONSUMER_TIMEOUT_MS, SystemFactory
from tests.faults.harness import RabbitNode
from tests.faults.scenario import Effects, Outcome, enqueue_effects, wait_for_states

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Longer than the control needs to be caught (the check runs once a minute: up to ~120 s).
JOB_SECONDS = 125.0


def hold_unacked(url: str, queue: str, seconds: float, result: dict[str, object]) -> None:
    """Consume one message without acking it; record whether (and when) the broker closed the
    channel. The broker checks about once a minute, so this can take up to twice the timeout."""

    async def run() -> None:
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=1)
            declared = await channel.declare_queue(queue, auto_delete=True)
            await channel.default_exchange.publish(aio_pika.Message(b"held"), routing_key=queue)
            got = asyncio.Event()

            async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                got.set()  # and never ack it

            await declared.consume(keep, no_ack=False)
            await asyncio.wait_for(got.wait(), 10)
            result["got"] = True
            held = time.monotonic()
            while not channel.is_closed and time.monotonic() - held < seconds:
                await asyncio.sleep(0.5)
            result["channel_closed"] = channel.is_closed
            result["closed_after_s"] = round(time.monotonic() - held)
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.mark.timeout(360)
def test_job_longer_than_the_consumer_timeout_runs_once(
    make_system: SystemFactory, postgres_url: str, broker: RabbitNode, effects: Effects
) -> None:
    control_queue = f"control-{time.time_ns()}"
    control: dict[str, object] = {}
    holder = threading.Thread(
        target=hold_unacked,
        args=(broker.url, control_queue, 2 * CONSUMER_TIMEOUT_MS / 1000 + 15, control),
        daemon=True,
    )

    system = make_system(postgres_url, broker.url)
    system.start("api", "api")
    system.start("scheduler", "scheduler")
    system.start("worker", "worker", "--concurrency", "2")
    system.wait_for_api()
    system.wait_for_catalog("faults.effect")
    holder.start()
    started = time.monotonic()
    ids = enqueue_effects(system.api_url, effects.directory, 1, seconds=JOB_SECONDS)
    states = wait_for_states(postgres_url, ids, ("Succeeded", "Failed"), timeout=JOB_SECONDS + 90)
    elapsed = time.monotonic() - started
    holder.join(2 * CONSUMER_TIMEOUT_MS / 1000 + 30)
    log = system.log_of("worker")
    outcome = Outcome.measure(
        "long-job", f"one {JOB_SECONDS:.0f} s job, consumer_timeout {CONSUMER_TIMEOUT_MS} ms",
        ids, states, effects, None, job_s=round(elapsed, 1),
        control_channel_closed_after_s=control.get("closed_after_s"),
    )  # fmt: skip
    outcome.report()
    # The control proves the broker enforces the timeout on an unacked delivery...
    assert control["got"] is True and control["channel_closed"] is True, control
    # ...and the job, acked at claim, ran once to completion with no channel trouble.
    assert outcome.completed == 1 and outcome.ran_twice == 0 and outcome.effect_twice == 0
    assert elapsed >= JOB_SECONDS
    # The job ran at least as long as the broker took to punish an unacked delivery.
    assert float(control["closed_after_s"]) <= JOB_SECONDS  # type: ignore[arg-type]
    assert "PRECONDITION_FAILED" not in log and "delivery acknowledgement" not in log
