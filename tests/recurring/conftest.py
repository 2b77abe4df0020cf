"""Recurring-job tests use the API tests' in-process app (real lifespan, real stores)."""

from tests.api.conftest import api, start_api

__all__ = ["api", "start_api"]
