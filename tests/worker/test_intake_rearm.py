"""The intake takes work again after a reconnection, whatever its pull loop was doing.

After RabbitMQ came back, a worker's intake re-arms: it closes its old channels and opens new
ones. Meanwhile its pull loop may switch to consuming (a slot freed, or a pull came back
empty). In the broker-outage fault test under load, that switch waited for the re-arm to
close the old channels, then ran while the intake had no channel at all: it added no consumer
yet marked the intake as consuming, so the pull loop never started a consumer on the new
channels, and 1,800 messages waited in the queue with no consumer for good.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from orchestrator.broker import JobMessage, Publisher, connect
from orchestrator.settings import Settings
from orchestrator.topology import Topology
from orchestrator_worker.intake import Delivery, Intake

SLOTS = 4
#: How long a published message may take to reach a consuming intake on this machine at worst.
TAKEN_WITHIN_SECONDS = 30.0


async def test_a_switch_to_consuming_during_a_rearm_leaves_a_consumer(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    settings = make_settings(sqlite_url)
    topology = Topology.of(settings)
    connection = await connect(settings.amqp_url, name="intake-rearm")
    taken: asyncio.Queue[Delivery] = asyncio.Queue()
    intake = Intake(connection, topology, ["default"], SLOTS, taken.put_nowait, taken.put_nowait)
    try:
        await intake.start()
        # The pull loop's switch to consuming (it runs under the intake's switching lock) comes
        # while a re-arm holds that lock to close the old channels: the order seen under load.
        await intake._stop_consuming()  # as when the slots ran out: pulling, no consumer
        rearm = asyncio.create_task(intake._rearm())
        await asyncio.sleep(0)  # the re-arm holds the lock, closing the old channels
        assert intake._switching.locked()
        switch = asyncio.create_task(intake._start_consuming())
        await asyncio.gather(rearm, switch)

        job_id = uuid.uuid4()
        assert await Publisher(connection, topology, 5).publish([JobMessage(job_id, "default")])
        delivery = await asyncio.wait_for(taken.get(), TAKEN_WITHIN_SECONDS)
        assert delivery.message.message_id == str(job_id)
        await intake.settle([delivery])
    finally:
        await intake.stop()
        await connection.close()
