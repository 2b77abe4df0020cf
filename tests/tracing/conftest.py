"""Tracing, logging and redaction tests drive the API in-process like the API tests do."""

from tests.api.conftest import start_api

__all__ = ["start_api"]
