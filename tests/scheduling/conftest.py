"""The in-process API with a client (from ``tests.test_client_api``), for these tests too."""

from tests.test_client_api import api

__all__ = ["api"]
