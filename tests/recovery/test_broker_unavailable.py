"""RabbitMQ unreachable or hanging: the scheduler's outbox relay backs off (capped, exponential)
and sends everything once the broker is back; the API keeps answering 201 while the broker
hangs (TCP open, no bytes moving), keeping each job and its outbox entry."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import sqlalchemy as sa

from orchestrator import outbox, store
from orchestrator.db import create_engine, db_now
from orchestrator.settings import Settings
from orchestrator_scheduler.relay import MAX_BACKOFF_SECONDS, Relay
from orchestrator_scheduler.scheduler import Scheduler
from tests.api.conftest import DOWN_AMQP_URL, start_api  # noqa: F401 - the API fixture
from tests.support.proxy import TcpProxy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_relay_backs_off_while_rabbitmq_is_down_then_sends_everything(
    make_settings: Callable[..., Settings], postgres_url: str, amqp_url: str
) -> None:
    settings = make_settings(postgres_url, amqp_url=DOWN_AMQP_URL, outbox_relay_after_seconds=0.0)
    engine = create_engine(settings.database_url)
    new = [
        store.NewJob(name="tests.add", queue="default", args=[i, i], kwargs={}) for i in range(5)
    ]
    async with engine.begin() as conn:
        await store.create_jobs(conn, new, await db_now(conn))  # committed, never published
    scheduler = Scheduler(settings)
    clock = Clock()
    relay = Relay(
        engine,
        scheduler._ensure_publisher,
        lambda: scheduler._connection,
        interval=1.0,
        relay_after=0.0,
        clock=clock,
    )
    try:
        # One minute of 1 s ticks with the broker refusing connections: a try at 0, 1, 3, 7,
        # 15 and 31 s (then the pause is capped), not sixty.
        for second in range(60):
            clock.now = float(second)
            assert await relay.tick() is False
        assert relay.tries == 6
        assert relay.backoff.failures == 6
        async with engine.connect() as conn:
            assert await outbox.backlog(conn) == len(new)
        # RabbitMQ is back: the next try (at most the cap later) publishes everything.
        scheduler.settings = settings.model_copy(update={"amqp_url": amqp_url})
        clock.now = 31.0 + MAX_BACKOFF_SECONDS
        await relay.tick()
        assert (relay.tries, relay.backoff.failures) == (7, 0)
        async with engine.connect() as conn:
            assert await outbox.backlog(conn) == 0
    finally:
        if scheduler._connection is not None:
            await scheduler._connection.close()
        await engine.dispose()


async def test_the_api_answers_201_while_rabbitmq_hangs(
    start_api,  # noqa: F811 - the fixture imported above
    postgres_url: str,
    amqp_url: str,
) -> None:
    with TcpProxy(urlsplit(amqp_url).port or 5672) as proxy:
        hanging_url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        # A publish would wait up to a minute for the broker; every answer must come sooner
        # than the client's 10 s timeout, so none may wait for it.
        async with start_api(postgres_url, amqp_url=hanging_url, publish_timeout_seconds=60) as api:
            first = await api.http.post(
                "/api/v1/jobs", json={"job": "tests.jobs_for_tests.add", "args": [1, 1]}
            )
            assert first.status_code == 201, first.text
            proxy.partition()  # connections stay open; not one byte moves either way
            ids = []
            for i in range(20):
                answer = await api.http.post(
                    "/api/v1/jobs",
                    json={"job": "tests.jobs_for_tests.add", "args": [i, i]},
                    timeout=10,
                )
                assert answer.status_code == 201, answer.text
                ids.append(answer.json()["id"])
            engine = create_engine(postgres_url)
            try:
                async with engine.connect() as conn:
                    kept = (
                        await conn.execute(
                            sa.select(sa.func.count())
                            .select_from(store.jobs_table)
                            .where(store.jobs_table.c.id.in_(ids))
                        )
                    ).scalar()
                    # Each accepted job is in the store with its pending publication.
                    assert kept == 20
                    assert await outbox.backlog(conn) >= 20
            finally:
                await engine.dispose()
            proxy.heal()
