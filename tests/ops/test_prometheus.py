"""A real Prometheus server scrapes a running system (api, worker and scheduler processes) and
reads the contract's metrics back through its HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator import Client
from tests import worker_jobs
from tests.ops.prometheus import Prometheus, config, require_prometheus, running_prometheus
from tests.support.system import System, free_port

pytestmark = pytest.mark.e2e
JOBS = 7


@dataclass
class Scraped:
    """A running system and where each role serves /metrics."""

    system: System
    targets: dict[str, list[str]]


@pytest.fixture
def scraped(postgres_url: str, amqp_url: str, tmp_path: Path) -> Iterator[Scraped]:
    require_prometheus()
    system = System(
        database_url=postgres_url,
        jobs="tests.worker_jobs",
        amqp_url=amqp_url,
        log_dir=tmp_path,
        extra_env={"ORCHESTRATOR_GAUGE_INTERVAL_SECONDS": "1"},
    )
    # The API serves /metrics on its own port, the other roles on their ops port.
    worker_port, scheduler_ports = free_port(), [free_port(), free_port()]
    try:
        system.start("api", "api")
        system.start(
            "worker", "worker", "--concurrency", "4", ORCHESTRATOR_WORKER_OPS_PORT=str(worker_port)
        )
        for n, port in enumerate(scheduler_ports):  # two: only the lease holder reports gauges
            system.start(f"scheduler{n}", "scheduler", ORCHESTRATOR_SCHEDULER_OPS_PORT=str(port))
        system.wait_for_api()
        system.wait_for_catalog("tests.add")
        ports = {"api": [system.api_port], "worker": [worker_port], "scheduler": scheduler_ports}
        yield Scraped(
            system, {role: [f"127.0.0.1:{p}" for p in each] for role, each in ports.items()}
        )
    finally:
        system.stop_all()


@pytest.fixture
def prometheus(scraped: Scraped, tmp_path: Path) -> Iterator[Prometheus]:
    with running_prometheus(tmp_path, config(scraped.targets)) as server:
        yield server


def test_prometheus_scrapes_every_role_and_counts_the_jobs_run(
    scraped: Scraped, prometheus: Prometheus
) -> None:
    prometheus.wait_for(
        "every role up", lambda: prometheus.value('sum(up{job=~"api|worker|scheduler"})') == 4
    )
    with Client(scraped.system.api_url) as client:
        ids = client.enqueue_many([worker_jobs.add.call(i, 1) for i in range(JOBS)])
        assert [client.wait(i, timeout=30) for i in ids] == [i + 1 for i in range(JOBS)]

    # Each role is scraped on its own schedule: wait for each count to arrive.
    for expr in (
        "sum(orchestrator_jobs_succeeded_total)",
        'sum(orchestrator_jobs_enqueued_total{job_name="tests.add", state="Enqueued"})',
        'sum(orchestrator_jobs_started_total{job_name="tests.add"})',
        'sum(orchestrator_job_duration_seconds_count{job_name="tests.add"})',
        'sum(orchestrator_enqueue_to_start_seconds_count{queue="default"})',
    ):
        prometheus.wait_for(f"{expr} == {JOBS}", lambda e=expr: prometheus.value(e) == JOBS)
    # The system-wide gauges come from one scheduler (the lease holder) alone.
    prometheus.wait_for(
        "the default queue's depth",
        lambda: bool(prometheus.vector('orchestrator_queue_depth{queue="default"}')),
    )
    depth = prometheus.vector('orchestrator_queue_depth{queue="default"}')
    assert [series["metric"]["job"] for series in depth] == ["scheduler"]
    # The worker consumes while it has free slots and pulls (no consumer) while they are short,
    # so a sample taken during the burst may count none; once idle it consumes again.
    consumers = 'orchestrator_queue_consumers{queue="default"}'
    prometheus.wait_for(f"{consumers} == 1", lambda: prometheus.value(consumers) == 1)
    roles = {
        series["metric"]["role"]
        for series in prometheus.vector("orchestrator_server_heartbeat_age_seconds")
    }
    assert roles == {"api", "worker", "scheduler"}
    # The autoscaler's query (deploy/k8s): messages waiting plus jobs running, none by now.
    autoscaler = "sum(orchestrator_queue_depth) + sum(orchestrator_jobs_in_flight)"
    prometheus.wait_for(f"{autoscaler} == 0", lambda: prometheus.value(autoscaler) == 0)
