"""At a worker's shutdown every running job sees ``ctx.shutting_down`` (in a thread and in a
process-mode child); ``ctx.cancelled`` stays unset (it means deletion); a job that raises
``JobInterrupted`` is handed back without spending a retry or counting a failure, and one that
returns inside the grace is recorded as usual."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import REGISTRY

from orchestrator_worker.worker import Worker
from tests.retries.conftest import CATALOG, enqueue, new_job, read
from tests.retries.test_process_isolation import lines


def failures(name: str) -> float:
    labels = {"queue": "default", "job_name": name}
    return REGISTRY.get_sample_value("orchestrator_jobs_failed_total", labels) or 0.0


async def test_running_jobs_see_the_shutdown_and_may_ask_to_run_again(
    make_settings, postgres_url, tmp_path: Path
):
    settings = make_settings(postgres_url, worker_ops_port=0, worker_concurrency=4)
    worker = Worker(settings, CATALOG, shutdown_grace=30)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(worker.ready.wait(), 60)
    names = ["shutdown.yields", "shutdown.process_yields", "shutdown.finishes"]
    notes = {name: tmp_path / name for name in names}
    failed_before = {name: failures(name) for name in names}
    ids = await enqueue(settings, [new_job(name, str(notes[name])) for name in names])
    for name in names:
        await lines(notes[name], 1, timeout=60)
    stop.set()
    await asyncio.wait_for(task, 60)

    assert worker.abandoned == 0  # all three ended inside the grace
    for name in names[:2]:
        assert (await lines(notes[name], 2))[1] == "shutting down, cancelled=False"
    yielded = [await read(settings, job_id) for job_id in ids[:2]]
    for row, history in yielded:
        assert (row.state, row.retries_used, row.error_type) == ("Enqueued", 0, None)
        assert [h.state for h in history] == ["Enqueued", "Processing", "Enqueued"]
        assert history[-1].reason.startswith("Job interrupted")
    row, _ = await read(settings, ids[2])
    assert (row.state, row.result) == ("Succeeded", "finished in the grace")
    assert {name: failures(name) for name in names} == failed_before
