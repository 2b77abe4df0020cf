"""(d) PostgreSQL down during processing, then back.

Real API, scheduler and worker processes on a private PostgreSQL cluster (the shared RabbitMQ,
in a namespace of their own). A burst is being processed when the cluster stops like a crash
(``pg_ctl -m immediate``) for longer than a lease. While it is down the API answers 503 with a
clear JSON error and keeps nothing; jobs that finish meanwhile are recorded once it is back;
jobs that run across the whole outage keep their leases (the scheduler expires none for one
lease period after the store returns, so the live worker renews first) and run once. Nothing is
lost or left stuck, and no process is restarted.
"""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest

from orchestrator import Client, JobCall
from tests.faults.conftest import SystemFactory
from tests.faults.harness import PostgresCluster, wait_until
from tests.faults.scenario import Effects, Outcome, job_states, wait_for_states

pytestmark = pytest.mark.e2e

LEASE = 4.0
OUTAGE = 3 * LEASE
N_SHORT = 300
#: Jobs that finish while the store is down (their outcome waits for it).
N_FINISHING = 4
#: Jobs that run from before the outage until after it (their leases must survive it).
N_SPANNING = 4


def _effect(effects: Effects, seconds: float) -> JobCall:
    return JobCall.named("faults.effect", str(effects.directory), seconds=seconds)


def _done_times(effects: Effects, job_ids: list[str]) -> list[float]:
    return [
        float(line.rsplit("t=", 1)[1])
        for job_id in job_ids
        for line in effects.lines(job_id)
        if line.startswith("done ")
    ]


def _answer_while_down(api_url: str) -> httpx.Response:
    body = {"job": "faults.effect", "kwargs": {"directory": "/nonexistent"}}
    return httpx.post(f"{api_url}/api/v1/jobs", json=body, timeout=30)


@pytest.mark.timeout(300)
def test_postgres_down_during_processing(
    make_system: SystemFactory,
    private_postgres: PostgresCluster,
    amqp_url: str,
    effects: Effects,
) -> None:
    database_url = private_postgres.url
    system = make_system(
        database_url,
        amqp_url,
        ORCHESTRATOR_LEASE_SECONDS=str(LEASE),
        ORCHESTRATOR_HEARTBEAT_SECONDS="1",
        ORCHESTRATOR_LEASE_EXPIRY_INTERVAL_SECONDS="0.2",
    )
    system.start("api", "api")
    system.start("scheduler", "scheduler")
    system.start("worker", "worker", "--concurrency", "16")
    system.wait_for_api()
    system.wait_for_catalog("faults.effect")

    # Sized so the spanning jobs outlast the outage by about a lease and the finishing jobs
    # end in its middle (both start at once: they are enqueued before the burst).
    spanning_s = OUTAGE + 3 * LEASE
    with Client(system.api_url, timeout=30) as client:
        spanning = client.enqueue_many([_effect(effects, spanning_s)] * N_SPANNING)
        finishing = client.enqueue_many([_effect(effects, OUTAGE / 2)] * N_FINISHING)
        short = client.enqueue_many([_effect(effects, 0.05)] * N_SHORT)
    accepted = spanning + finishing + short
    wait_until(
        lambda: sum(1 for j in short if effects.count(j, "done")) >= N_SHORT // 10,
        60,
        "processing to be under way",
    )
    wait_until(
        lambda: all(effects.count(j, "start") for j in spanning + finishing), 30, "long jobs"
    )

    private_postgres.stop("immediate")  # like a crash: no checkpoint, recovery at start
    stopped_at, stopped_wall = time.monotonic(), time.time()
    answer = _answer_while_down(system.api_url)
    ready = httpx.get(f"{system.api_url}/readyz", timeout=30)
    done_before = sum(1 for j in short if effects.count(j, "done"))
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped_at)))
    private_postgres.start()
    back_at, back_wall = time.monotonic(), time.time()

    # While it was down: a clear 503, nothing accepted.
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "store_unavailable"
    assert "store" in answer.json()["error"]["message"]
    assert ready.status_code == 503

    # Recovery: until every job that was not still running its own course had ended.
    wait_for_states(database_url, short + finishing, ("Succeeded", "Failed"), timeout=120)
    recovery = time.monotonic() - back_at
    states = wait_for_states(database_url, accepted, ("Succeeded", "Failed"), timeout=120)
    finished_meanwhile = [
        t for t in _done_times(effects, finishing) if stopped_wall < t < back_wall
    ]
    outcome = Outcome.measure(
        "d-postgres-down",
        f"pg_ctl -m immediate stop of the private PostgreSQL while {N_SHORT} short jobs were "
        f"processing, for {OUTAGE:g} s (lease {LEASE:g} s), then started again",
        accepted, states, effects, recovery,
        outage_s=round(back_at - stopped_at, 1),
        short_done_before_outage=done_before,
        finished_during_outage=len(finished_meanwhile),
        http_status_while_down=answer.status_code,
    )  # fmt: skip
    outcome.report()
    logs = {name: system.log_of(name)[-3000:] for name in ("worker", "scheduler")}
    assert outcome.lost == 0 and outcome.stuck == 0, (Counter(states.values()), logs)
    assert outcome.completed == len(accepted), Counter(states.values())
    # Runs twice: none. The spanning jobs kept their leases across the outage.
    assert outcome.ran_twice == 0 and outcome.effect_twice == 0, logs
    # The jobs that finished during the outage were recorded after it.
    assert len(finished_meanwhile) == N_FINISHING
    assert all(states[j] == "Succeeded" for j in finishing)
    # The API kept nothing from the request it refused.
    assert set(job_states(database_url)) == set(accepted)
    # No process needed a restart; the API is ready again.
    assert all(p.poll() is None for p in system.processes.values())
    assert httpx.get(f"{system.api_url}/readyz", timeout=10).status_code == 200
