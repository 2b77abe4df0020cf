"""Trace and log sizes are bounded: a job's 10 MB exception message reaches neither a span
(attributes and exception events are cut by the span limits every role installs) nor a log line
whole."""

from __future__ import annotations

import io
import logging

from orchestrator import logs, tracing
from tests.poison import jobs
from tests.poison.conftest import enqueue, new_job, read, wait_all

HUGE = 10 * 1024 * 1024


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


def test_log_records_are_bounded_in_both_formats() -> None:
    for log_format in ("console", "json"):
        stream = io.StringIO()
        logger = logging.getLogger(f"tests.poison.bounds.{log_format}")
        logger.addHandler(logs.handler(log_format, stream))  # type: ignore[arg-type]
        logger.propagate = False
        try:
            raise RuntimeError("m" * HUGE)
        except RuntimeError:
            logger.exception("job said %s", "z" * HUGE)
        line = stream.getvalue()
        assert "characters cut" in line
        assert len(line) < 3 * logs.MESSAGE_MAX_CHARS, log_format
