"""(j) A three-node RabbitMQ cluster under load: the node leading the work queue stops and comes
back; then two of three nodes stop (no majority) and one comes back. The roles are given all
three addresses (``ORCHESTRATOR_AMQP_URLS``) and fail over by themselves.

Checked from the jobs' own start/done marks and the store: nothing lost, nothing stuck, no two
attempts of a job ever overlap, nothing enqueued while the majority was gone starts before it is
back; measured: the longest pause between job starts after the leader stopped, and how long
work took to resume once the majority was back.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import SystemFactory
from tests.faults.harness import RabbitCluster, require_tools, wait_until
from tests.faults.scenario import Effects, Outcome, enqueue_effects, wait_for_states

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

BATCH = 5
PAUSE = 0.25
JOB_SECONDS = 0.05


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    require_tools(rabbitmq=True)
    formed = RabbitCluster(3)
    try:
        formed.start()
        yield formed
    finally:
        formed.destroy()


class Load:
    """Bulk enqueues of ``BATCH`` effect jobs every ``PAUSE`` s through the API, in a thread."""

    def __init__(self, api_url: str, directory: Path) -> None:
        self.api_url = api_url
        self.directory = directory
        self.accepted: list[tuple[float, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ids = enqueue_effects(self.api_url, self.directory, BATCH, seconds=JOB_SECONDS)
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            else:
                now = time.time()
                self.accepted.extend((now, job_id) for job_id in ids)
            self._stop.wait(PAUSE)

    def ids(self, since: float = 0.0) -> list[str]:
        return [job_id for at, job_id in list(self.accepted) if at >= since]

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(60)


def _attempts(effects: Effects, job_id: str, ends_at: float) -> list[tuple[float, float]]:
    """(start, end) of each attempt, from its marks; an attempt without an end mark lasts
    until ``ends_at`` (its process is still running)."""
    marks: dict[str, dict[str, float]] = {}
    for line in effects.lines(job_id):
        what, *fields = line.split()
        values = dict(field.split("=", 1) for field in fields)
        key = f"{values['attempt']}:{values['pid']}"
        marks.setdefault(key, {})[what] = float(values["t"])
    return sorted((m["start"], m.get("done", m.get("cancelled", ends_at))) for m in marks.values())


def _overlapping(effects: Effects, job_ids: list[str]) -> int:
    ends_at = time.time()
    count = 0
    for job_id in job_ids:
        attempts = _attempts(effects, job_id, ends_at)
        count += any(later[0] < earlier[1] for earlier, later in itertools.pairwise(attempts))
    return count


def _starts(effects: Effects, job_ids: list[str]) -> list[float]:
    ends_at = time.time()
    return sorted(start for j in job_ids for start, _ in _attempts(effects, j, ends_at))


def _longest_pause(starts: list[float], after: float) -> float:
    """The longest time without a job start, from ``after`` to the last start."""
    later = [after] + [s for s in starts if s > after]
    return max((b - a for a, b in itertools.pairwise(later)), default=float("inf"))


@pytest.mark.timeout(600)
def test_a_cluster_loses_the_work_queue_leader_then_its_majority(
    make_system: SystemFactory, postgres_url: str, cluster: RabbitCluster, effects: Effects
) -> None:
    system = make_system(
        postgres_url,
        cluster.urls[0],
        ORCHESTRATOR_AMQP_URLS=",".join(cluster.urls),
        ORCHESTRATOR_QUORUM_GROUP_SIZE="3",
        ORCHESTRATOR_LEASE_SECONDS="6",
        ORCHESTRATOR_HEARTBEAT_SECONDS="1",
    )
    work_queue = f"{system.namespace}.q.default"
    system.start("api", "api")
    system.start("scheduler", "scheduler")
    system.wait_for_api()
    for name in ("worker-1", "worker-2"):
        system.start(name, "worker", "--concurrency", "8")
    system.wait_for_catalog("faults.effect")
    # Declared (by the workers) once the cluster had formed: a member on every node.
    wait_until(lambda: len(cluster.members(work_queue)) == 3, 60, "work queue with 3 members")

    load = Load(system.api_url, effects.directory)
    load.thread.start()
    try:
        # (1) The node leading the work queue stops during the load, and comes back.
        wait_until(lambda: len(_starts(effects, load.ids())) >= 100, 120, "work flowing")
        leader = cluster.leader(work_queue)
        leader.stop()
        stopped_at = time.time()
        wait_until(
            lambda: len([s for s in _starts(effects, load.ids()) if s > stopped_at]) >= 100,
            120,
            "work flowing on the other nodes",
        )
        pause = _longest_pause(_starts(effects, load.ids()), stopped_at)
        cluster.restart(leader)
        leader_back = time.time()
        wait_until(lambda: len(load.ids(since=leader_back)) >= 50, 60, "more load")

        # (2) Two of three nodes stop: no majority.
        down = [leader, *[n for n in cluster.nodes if n is not leader][:1]]
        for node in down:
            node.stop()
        majority_lost = time.time()
        wait_until(lambda: len(load.ids(since=majority_lost)) >= 100, 60, "enqueues, no majority")
        returned = down[-1]
        # The majority is back as soon as the node's queue members are: somewhere inside
        # restart(), so everything is measured from the moment it began.
        majority_back = time.time()
        cluster.restart(returned)
        restart_s = time.time() - majority_back
        wait_until(lambda: len(load.ids(since=majority_back)) >= 50, 60, "load after return")
    finally:
        load.stop()
    ids = load.ids()
    states = wait_for_states(postgres_url, ids, ("Succeeded", "Failed"), timeout=180)
    drained = time.time() - majority_back
    for node in cluster.nodes:
        if node not in cluster.running():
            cluster.restart(node)

    without_majority = load.ids(since=majority_lost)
    before_return = [s for s in _starts(effects, without_majority) if s < majority_back]
    resumed = [s for s in _starts(effects, ids) if s > majority_back]
    first = Outcome.measure(
        "j-cluster-leader-stopped", "3-node cluster (quorum group size 3), 2 workers x 8; the "
        "node leading the work queue stopped during ~20 jobs/s of 50 ms jobs, later restarted",
        load.ids(), states, effects, None, longest_pause_s=round(pause, 1),
        overlapping=_overlapping(effects, ids), http_errors=len(load.errors),
    )  # fmt: skip
    second = Outcome.measure(
        "j-cluster-no-majority", "then two of three nodes stopped (no majority) during the same "
        "load, one restarted (times from its start)",
        without_majority, states, effects, drained,
        down_s=round(majority_back - majority_lost, 1),
        started_without_majority=len(before_return),
        resumed_after_s=round(min(resumed) - majority_back, 1) if resumed else None,
        node_restart_s=round(restart_s, 1),
    )  # fmt: skip
    first.report()
    second.report()
    logs = {name: system.log_of(name)[-2000:] for name in ("worker-1", "worker-2", "scheduler")}
    assert load.errors == [], load.errors[:5]
    assert first.lost == 0 and first.stuck == 0, logs
    assert first.completed == len(ids)
    assert _overlapping(effects, ids) == 0
    assert before_return == []  # nothing enqueued without a majority ran before it came back
    assert second.lost == 0 and second.stuck == 0
    assert all(p.poll() is None for p in system.processes.values())
