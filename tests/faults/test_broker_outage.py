"""(c) RabbitMQ killed during a burst of 2,000 enqueues, then back: the API answers 201
throughout, the outbox relay publishes afterwards, the worker takes work again, and every job
runs exactly once.

After the restart the drain lasts as long as jobs keep moving (``tests.faults.draining``): on a
loaded machine the ~1,800 jobs left take well over two minutes. A worker whose intake stopped
taking work after the reconnection (``tests/worker/test_intake_rearm.py``) fails it after 90 s
without progress, with the paths of the whole logs in the message.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from orchestrator import AsyncClient, JobCall
from tests.faults.conftest import SystemFactory
from tests.faults.draining import role_logs, wait_while_progressing
from tests.faults.harness import RabbitNode, wait_until
from tests.faults.scenario import Effects, Outcome

pytestmark = pytest.mark.e2e

N_BURST = 2000
KILL_AFTER = 300
CONCURRENT_REQUESTS = 8


class Burst:
    """Single ``POST /api/v1/jobs`` requests from a few concurrent clients, in a thread."""

    def __init__(self, api_url: str, call: JobCall, n: int) -> None:
        self.api_url = api_url
        self.call = call
        self.n = n
        self.ids: list[str] = []
        self.errors: Counter[str] = Counter()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        remaining = iter(range(self.n))
        async with AsyncClient(self.api_url, timeout=30) as client:

            async def sender() -> None:
                for _ in remaining:
                    try:
                        self.ids.append(await client.enqueue(self.call))
                    except Exception as exc:
                        self.errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1

            await asyncio.gather(*(sender() for _ in range(CONCURRENT_REQUESTS)))


@pytest.mark.timeout(1200)  # a last resort: the drain fails after 90 s without progress
def test_broker_killed_during_a_burst_of_enqueues(
    make_system: SystemFactory, postgres_url: str, broker: RabbitNode, effects: Effects
) -> None:
    system = make_system(postgres_url, broker.url)
    system.start("api", "api")
    system.start("scheduler", "scheduler")
    system.start("worker", "worker", "--concurrency", "16")
    system.wait_for_api()
    system.wait_for_catalog("faults.effect")

    burst = Burst(system.api_url, JobCall.named("faults.effect", str(effects.directory)), N_BURST)
    began = time.monotonic()
    burst.thread.start()
    wait_until(lambda: len(burst.ids) + sum(burst.errors.values()) >= KILL_AFTER, 60, "burst")
    broker.kill()
    killed_at = time.monotonic()
    burst.thread.join(300)
    assert not burst.thread.is_alive()
    burst_s = time.monotonic() - began
    down_s = time.monotonic() - killed_at
    assert burst.errors == Counter(), burst.errors  # 201 for every request, broker or not
    assert len(burst.ids) == N_BURST
    ran_before_restart = sum(1 for f in effects.directory.iterdir())

    broker.start()
    back_at = time.monotonic()
    # As long as it takes while jobs keep moving: a loaded machine drains slowly, not never.
    drain = wait_while_progressing(postgres_url, burst.ids, ("Succeeded", "Failed"))
    states = drain.states
    recovery = time.monotonic() - back_at
    outcome = Outcome.measure(
        "c-broker-down", f"kill -9 of RabbitMQ after {KILL_AFTER} of {N_BURST} single POSTs "
        f"({CONCURRENT_REQUESTS} concurrent clients); restarted after the burst",
        burst.ids, states, effects, recovery, http_201=len(burst.ids),
        burst_s=round(burst_s, 1), broker_down_s=round(down_s, 1),
        ran_before_restart=ran_before_restart,
    )  # fmt: skip
    outcome.report()
    logs = role_logs(system.log_dir, system.namespace, ["worker", "scheduler", "api"])
    assert outcome.lost == 0 and outcome.stuck == 0, f"{drain.summary()}\n{logs}"
    assert outcome.completed == N_BURST
    assert outcome.ran_twice == 0 and outcome.effect_twice == 0
    # No process needed a restart.
    assert all(p.poll() is None for p in system.processes.values())
