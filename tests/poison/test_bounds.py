"""Trace sizes are bounded: a job's 10 MB exception message does not reach its span whole
(attributes and exception events are cut by the span limits every role installs). A log line's
own bound is tests/unit/test_log_bounds.py."""

from __future__ import annotations

from orchestrator import tracing
from tests.poison import jobs
from tests.poison.conftest import enqueue, new_job, read, wait_all


async def test_a_10_mb_exception_message_is_cut_on_the_span(start_worker, database_url, spans):
    running = await start_worker(database_url)
    settings = running.settings
    jobs.RELEASE.set()
    job = new_job("poison.held_raises", "huge")
    await enqueue(settings, [job])
    await wait_all(settings, [job.id], {"Failed"})
    row, _ = await read(settings, job.id)
    assert len(row.error_message) < 5000
    [run] = [s for s in spans.get_finished_spans() if s.name == "run poison.held_raises"]
    values = [*run.attributes.values()]
    values += [value for event in run.events for value in event.attributes.values()]
    assert any(str(value).startswith("mmmm") for value in values)  # the message is there, cut
    assert max(len(str(value)) for value in values) <= tracing.ATTRIBUTE_MAX_CHARS


