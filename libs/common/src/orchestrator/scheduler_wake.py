"""After commit: count created jobs, and wake the schedulers when a delayed job is due earlier
than any wake-up already sent.

The wake-up is a hint on a fanout exchange (``Topology.scheduler_wake_exchange``); the scheduler
also looks at the store every few seconds, so a lost hint only delays a job by that much.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

from orchestrator.lifecycle import State
from orchestrator.metrics import JOBS_ENQUEUED
from orchestrator.outbox import OutboxSender
from orchestrator.store import NewJob
from orchestrator.topology import Topology


class SchedulerWake:
    def __init__(self, sender: OutboxSender, topology: Topology) -> None:
        self._sender = sender
        self._topology = topology
        #: The earliest due time (epoch seconds) already signalled and not yet past: a later
        #: job needs no wake-up, the scheduler finds it when it wakes for that one.
        self._signalled: float | None = None
        self._tasks: set[asyncio.Task[bool]] = set()

    def created(self, jobs: Sequence[NewJob]) -> None:
        for (queue, name, state), count in Counter(
            (j.queue, j.name, j.state.value) for j in jobs
        ).items():
            JOBS_ENQUEUED.labels(queue, name, state).inc(count)
        due = [j.due_at.timestamp() for j in jobs if j.state is State.SCHEDULED and j.due_at]
        if due:
            self.signal(min(due))

    def signal(self, due_at: float) -> None:
        publisher = self._sender.publisher
        if publisher is None:
            return
        signalled = self._signalled
        if signalled is not None and time.time() < signalled <= due_at:
            return
        self._signalled = due_at
        # Not awaited: a request is answered once its job is committed, not once hinted.
        task = asyncio.create_task(
            publisher.signal({"due_at": due_at}, self._topology.scheduler_wake_exchange)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
