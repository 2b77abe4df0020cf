"""(h) A network partition between a worker and RabbitMQ, longer than three heartbeats, then
healed: the worker reconnects by itself, stale acks are harmless, no job runs twice."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.faults.conftest import SystemFactory
from tests.faults.harness import RabbitNode, wait_until
from tests.faults.scenario import Effects, Outcome, enqueue_effects, wait_for_states
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.e2e

HEARTBEAT = 2
PARTITION_S = 4 * HEARTBEAT + 2
N_JOBS = 40


@pytest.fixture
def proxy(broker: RabbitNode) -> Iterator[TcpProxy]:
    with TcpProxy(broker.port) as running:
        yield running


@pytest.mark.timeout(200)
def test_partition_between_worker_and_broker(
    make_system: SystemFactory,
    postgres_url: str,
    broker: RabbitNode,
    proxy: TcpProxy,
    effects: Effects,
) -> None:
    system = make_system(postgres_url, broker.url)
    system.start("api", "api")
    system.start("scheduler", "scheduler")
    worker_url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?heartbeat={HEARTBEAT}"
    system.start("worker", "worker", "--concurrency", "4", ORCHESTRATOR_AMQP_URL=worker_url)
    system.wait_for_api()
    system.wait_for_catalog("faults.effect")
    connections_before = proxy.connections_total

    ids = enqueue_effects(system.api_url, effects.directory, N_JOBS, seconds=1.0)
    wait_until(lambda: sum(effects.count(j, "start") for j in ids) >= 4, 20, "jobs running")
    proxy.partition()
    time.sleep(PARTITION_S)
    started_during = sum(effects.count(j, "start") for j in ids)
    proxy.heal()
    healed_at = time.monotonic()

    states = wait_for_states(postgres_url, ids, ("Succeeded", "Failed"), timeout=60)
    recovery = time.monotonic() - healed_at
    log = system.log_of("worker")
    outcome = Outcome.measure(
        "h-partition", f"proxy between worker and RabbitMQ stalls both ways for {PARTITION_S} s "
        f"(heartbeat {HEARTBEAT} s) while {N_JOBS} jobs of 1 s run",
        ids, states, effects, recovery, started_before_heal=started_during,
        reconnections=proxy.connections_total - connections_before,
        stale_acks=log.count("ack after claim failed")
        + log.count("delivery of a closed channel not acked"),
    )  # fmt: skip
    outcome.report()
    assert system.processes["worker"].poll() is None, log[-3000:]
    assert proxy.connections_total > connections_before  # it reconnected through the proxy
    assert started_during < N_JOBS  # the partition really held work back
    assert outcome.lost == 0 and outcome.stuck == 0, log[-3000:]
    assert outcome.completed == N_JOBS
    assert outcome.ran_twice == 0 and outcome.effect_twice == 0
