"""(e) every message delivered twice; (f) poison messages next to ordinary jobs."""

from __future__ import annotations

import json
import random
import time

import pytest

from tests.faults.amqp import publish_raw, queue_depth, read_queue
from tests.faults.conftest import SystemFactory
from tests.faults.harness import RabbitNode, wait_until
from tests.faults.scenario import Effects, Outcome, enqueue_effects, wait_for_states

pytestmark = pytest.mark.e2e

N_DUPLICATED = 200


def test_every_message_delivered_twice_runs_each_job_once(
    make_system: SystemFactory, postgres_url: str, broker: RabbitNode, effects: Effects
) -> None:
    system = make_system(postgres_url, broker.url)
    system.start("api", "api")
    system.start("scheduler", "scheduler")
    system.wait_for_api()
    work_queue = f"{system.namespace}.q.default"

    # No worker yet: every job's message waits in the queue, then gets a second copy, the
    # copies shuffled so that some arrive while their original is still running.
    ids = enqueue_effects(system.api_url, effects.directory, N_DUPLICATED, seconds=0.2)
    wait_until(
        lambda: queue_depth(broker.url, work_queue) == N_DUPLICATED, 30, "originals published"
    )
    copies = [json.dumps({"job_id": job_id}).encode() for job_id in ids]
    random.Random(4).shuffle(copies)
    publish_raw(broker.url, f"{system.namespace}.jobs", "default", copies)
    assert queue_depth(broker.url, work_queue) == 2 * N_DUPLICATED

    started = time.monotonic()
    system.start("worker", "worker", "--concurrency", "8")
    states = wait_for_states(postgres_url, ids, ("Succeeded", "Failed"), timeout=90)
    drained = time.monotonic() - started
    wait_until(lambda: queue_depth(broker.url, work_queue) == 0, 30, "duplicates consumed")
    outcome = Outcome.measure(
        "e-duplicates", f"{N_DUPLICATED} jobs (0.2 s each), every message published twice",
        ids, states, effects, None, messages=2 * N_DUPLICATED, drain_s=round(drained, 1),
    )  # fmt: skip
    outcome.report()
    assert outcome.lost == 0 and outcome.stuck == 0 and outcome.completed == N_DUPLICATED
    assert outcome.ran_twice == 0 and outcome.effect_twice == 0
    assert set(effects.executions(ids).values()) == {1}


POISON = [b"not json at all", b'{"no_job_id": 1}', b"\xff\xfe\x00", b'{"job_id": "not-a-uuid"}']


def test_poison_messages_are_dead_lettered_and_other_jobs_unaffected(
    make_system: SystemFactory, postgres_url: str, broker: RabbitNode, effects: Effects
) -> None:
    system = make_system(postgres_url, broker.url)
    system.start("api", "api")
    system.start("scheduler", "scheduler")
    system.start("worker", "worker", "--concurrency", "4")
    system.wait_for_api()
    system.wait_for_catalog("faults.effect")
    exchange = f"{system.namespace}.jobs"

    before = enqueue_effects(system.api_url, effects.directory, 25)
    wait_for_states(postgres_url, before, ("Succeeded",), timeout=30)  # the exchange exists
    publish_raw(broker.url, exchange, "default", POISON)
    after = enqueue_effects(system.api_url, effects.directory, 25)
    ids = before + after
    started = time.monotonic()
    states = wait_for_states(postgres_url, ids, ("Succeeded", "Failed"), timeout=60)
    elapsed = time.monotonic() - started

    dead_queue = f"{system.namespace}.dead"
    wait_until(lambda: queue_depth(broker.url, dead_queue) >= len(POISON), 20, "dead letters")
    # Each poison message reached the dead-letter queue exactly once: no requeue loop.
    assert sorted(read_queue(broker.url, dead_queue)) == sorted(POISON)
    assert queue_depth(broker.url, f"{system.namespace}.q.default") == 0
    assert system.processes["worker"].poll() is None
    outcome = Outcome.measure(
        "f-poison", "4 undecodable messages published among 50 ordinary jobs",
        ids, states, effects, None, dead_lettered=len(POISON), drain_s=round(elapsed, 1),
    )  # fmt: skip
    outcome.report()
    assert outcome.lost == 0 and outcome.stuck == 0 and outcome.completed == len(ids)
    assert outcome.ran_twice == 0 and outcome.effect_twice == 0
