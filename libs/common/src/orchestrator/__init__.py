"""Orchestrator: reliable background jobs for Python, in the spirit of Hangfire, on RabbitMQ."""

from orchestrator.client import AsyncClient, Client
from orchestrator.cron import Cron
from orchestrator.errors import JobInterrupted
from orchestrator.jobs import JobCall, JobContext, job

__all__ = ["AsyncClient", "Client", "Cron", "JobCall", "JobContext", "JobInterrupted", "job"]
