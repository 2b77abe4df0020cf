"""Orchestrator: reliable background jobs for Python, in the spirit of Hangfire, on RabbitMQ."""

from orchestrator.cron import Cron
from orchestrator.jobs import JobCall, JobContext, job

__all__ = ["Cron", "JobCall", "JobContext", "job"]
