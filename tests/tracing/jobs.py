"""Jobs for the tracing, logging and redaction tests; each logs and takes a secret argument."""

from __future__ import annotations

import logging

from orchestrator import JobContext, job

log = logging.getLogger(__name__)

#: Secret values the tests look for in logs, spans and API responses (they must not be there).
PASSWORD = "correct-horse-battery-staple"
TOKEN = "tok-5ecr3t-0f-the-upload"


@job(secret=["password"])
def sign_in(user: str, password: str) -> str:
    """A sync job (it runs in the worker's thread pool) that logs."""
    log.info("signing in %s", user)
    return user


@job(secret=["token"], retries=1, retry_delays=[1])
async def flaky_upload(name: str, token: str, context: JobContext) -> str:
    """Fails its first attempt, succeeds on the retry."""
    log.info("uploading %s, attempt %d", name, context.attempt)
    if context.attempt == 1:
        raise ConnectionError(f"upload of {name} refused")
    return name


@job(secret=["password"], isolation="process")
def sign_in_isolated(user: str, password: str) -> str:
    """A sync job run in a child process (process isolation), which logs from there."""
    log.info("signing in %s from a child process", user)
    return user
