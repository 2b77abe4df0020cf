"""Tracing, logging and redaction tests drive the API in-process like the API tests do, and
collect finished spans in memory (the ``spans`` fixture, tests/support/spans.py)."""

from __future__ import annotations

from tests.api.conftest import start_api

__all__ = ["start_api"]
