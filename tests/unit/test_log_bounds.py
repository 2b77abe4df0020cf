"""A log record stays bounded whatever a job puts in its message or exception (orchestrator.logs),
in both log formats."""

from __future__ import annotations

import io
import logging

from orchestrator import logs

HUGE = 10 * 1024 * 1024


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
