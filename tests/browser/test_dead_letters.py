"""Dead letters in the dashboard: a job's rejected message and a garbage message, recorded by the
janitor, then replayed and discarded from the page."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import aio_pika
import pytest
from playwright.sync_api import Locator, expect

from orchestrator import Client
from orchestrator.settings import Settings
from orchestrator.topology import Topology, declare_base, declare_work_queue
from tests.browser import jobs
from tests.browser.ui import Dashboard
from tests.support.system import System

pytestmark = pytest.mark.e2e

#: A queue no worker of the test system consumes, so a message waits there to be rejected.
UNCONSUMED = "other"


async def _reject_into_dead_letters(system: System, garbage: bytes) -> None:
    """Reject the job's waiting message and a garbage one, as a worker would reject them."""
    topology = Topology(system.namespace, Settings().delivery_limit)
    connection = await aio_pika.connect(system.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await declare_base(channel, topology)
        queue = await declare_work_queue(channel, topology, UNCONSUMED)
        await exchange.publish(aio_pika.Message(garbage), routing_key=UNCONSUMED)
        for _ in range(2):
            deadline = time.monotonic() + 30
            while (message := await queue.get(no_ack=False, fail=False)) is None:
                assert time.monotonic() < deadline, "no message waited in the queue"
                await asyncio.sleep(0.05)
            await message.reject(requeue=False)
    finally:
        await connection.close()


def _reload_until_shown(admin: Dashboard, row: Locator, timeout: float = 60) -> None:
    """The janitor records dead letters every few seconds; the page shows them when reloaded."""
    deadline = time.monotonic() + timeout
    admin.open("/hangfire/dead-letters", "Dead letters")
    while row.count() == 0:
        assert time.monotonic() < deadline, "the dead letter never appeared"
        admin.page.wait_for_timeout(500)
        admin.page.reload()
    admin.shot("dead-letters")


def test_replay_and_discard_dead_letters(admin: Dashboard, client: Client, system: System) -> None:
    job_id = client.enqueue(jobs.quick.call("dead-lettered"), queue=UNCONSUMED)
    marker = f"garbage-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs in this one
        thread.submit(asyncio.run, _reject_into_dead_letters(system, marker.encode())).result()

    own = admin.item(job_id[:8], "Replay")
    garbage = admin.item(marker, "Discard")
    _reload_until_shown(admin, own)
    expect(garbage).to_have_count(1)
    # It names no job: there is nothing to replay, so only Discard is offered.
    expect(garbage.get_by_role("button", name="Replay", exact=True)).to_have_count(0)
    admin.wait_for_job_state(job_id, "Failed")  # failed by its dead letter
    expect(admin.page.get_by_text("Dead-lettered").first).to_be_visible()

    admin.open("/hangfire/dead-letters", "Dead letters")
    admin.act("Replay", within=own)
    expect(own).to_have_count(0)
    admin.wait_for_job_state(job_id, "Enqueued")  # its message sent again, to a queue unconsumed

    admin.open("/hangfire/dead-letters", "Dead letters")
    admin.act("Discard", within=garbage)
    expect(garbage).to_have_count(0)
    client.delete(job_id)
