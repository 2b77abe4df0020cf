"""(b) SIGTERM a worker mid-job: short jobs finish within the grace period, the rest are handed
back to Enqueued and run again on the next worker; nothing lost, nothing left Processing."""

from __future__ import annotations

import signal
import time

import pytest

from orchestrator import Client
from tests.faults.conftest import SystemFactory
from tests.faults.harness import RabbitNode, wait_until
from tests.faults.scenario import Effects, Outcome, enqueue_effects, job_states, wait_for_states

pytestmark = pytest.mark.e2e

GRACE = 3.0


@pytest.mark.timeout(600)
def test_sigterm_mid_job_finishes_short_jobs_and_hands_back_the_rest(
    make_system: SystemFactory, postgres_url: str, broker: RabbitNode, effects: Effects
) -> None:
    system = make_system(
        postgres_url, broker.url, ORCHESTRATOR_WORKER_SHUTDOWN_GRACE_SECONDS=str(GRACE)
    )
    system.start("api", "api")
    system.start("scheduler", "scheduler")
    system.start("worker", "worker", "--concurrency", "4")
    system.wait_for_api()
    system.wait_for_catalog("faults.effect")

    short = enqueue_effects(system.api_url, effects.directory, 2, seconds=1.5)
    long = enqueue_effects(system.api_url, effects.directory, 2, seconds=12)
    everything = short + long
    wait_until(
        lambda: all(effects.count(j, "start") for j in everything), 120, "all four jobs started"
    )

    began = time.monotonic()
    code = system.stop("worker", signal.SIGTERM, timeout=30)
    stopped_after = time.monotonic() - began
    assert code == 0, system.log_of("worker")
    # The worker waits for the grace period (the long jobs never finish in it), then exits.
    assert GRACE - 0.5 <= stopped_after < GRACE + 6, stopped_after

    states = job_states(postgres_url)
    assert [states[j] for j in short] == ["Succeeded", "Succeeded"]
    assert [states[j] for j in long] == ["Enqueued", "Enqueued"]
    # They were told of the shutdown; their tokens (deletion) never fired.
    assert [effects.count(j, "shutting_down") for j in long] == [1, 1]
    assert [effects.count(j, "cancelled") for j in long] == [0, 0]
    with Client(system.api_url) as client:
        history = [h["state"] for h in client.get(long[0])["history"]]
        assert history == ["Enqueued", "Processing", "Enqueued"]

    restarted = time.monotonic()
    system.start("worker2", "worker", "--concurrency", "4")
    states = wait_for_states(postgres_url, everything, ("Succeeded", "Failed"), timeout=60)
    recovery = time.monotonic() - restarted
    outcome = Outcome.measure(
        "b-sigterm", "SIGTERM to a worker running 4 jobs (2 x 1.5 s, 2 x 12 s), grace 3 s",
        everything, states, effects, recovery, worker_exit_s=round(stopped_after, 1),
    )  # fmt: skip
    outcome.report()
    assert outcome.lost == 0 and outcome.stuck == 0
    assert outcome.completed == 4
    # The two handed-back jobs necessarily started twice; no effect happened twice.
    assert effects.executions(short) == {short[0]: 1, short[1]: 1}
    assert effects.executions(long) == {long[0]: 2, long[1]: 2}
    assert outcome.ran_twice == 2 and outcome.effect_twice == 0
