"""Orchestrator: reliable background jobs for Python, in the spirit of Hangfire, on RabbitMQ."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from orchestrator.errors import JobInterrupted
from orchestrator.jobs import JobCall, JobContext, job

if TYPE_CHECKING:
    from orchestrator.client import AsyncClient, Client
    from orchestrator.cron import Cron

__all__ = ["AsyncClient", "Client", "Cron", "JobCall", "JobContext", "JobInterrupted", "job"]

# Imported on first use: a module that only defines jobs (every worker's, and `import
# orchestrator` in every CLI call) does not load the HTTP client and its tracing.
_LAZY = {
    "AsyncClient": "orchestrator.client",
    "Client": "orchestrator.client",
    "Cron": "orchestrator.cron",
}


if not TYPE_CHECKING:  # hidden from mypy, which would read any unknown attribute as Any

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
