"""What a request to create jobs may hold: the body of ``POST /api/v1/jobs`` (and of each job
of a bulk or a batch), validated the same way by the API and by
:class:`orchestrator.direct.DirectClient`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.bounds import (
    MAX_RETRY_DELAY_SECONDS,
    Instant,
    PositiveSeconds,
    Seconds,
    Text,
)
from orchestrator.names import QUEUE_NAME_PATTERN

MAX_BULK = 10_000

QueueName = Annotated[
    str, Field(pattern=QUEUE_NAME_PATTERN.pattern, description="lowercase letters, digits, _ -")
]
#: A job name as a request gives it (looked up in the catalog).
JobName = Annotated[
    Text, Field(min_length=1, max_length=200, description="a name from the catalog")
]
#: Retries a job may have: a JSON integer (``true`` is not 1).
Retries = Annotated[int, Field(strict=True, ge=0, le=100)]
RetryDelay = Annotated[
    float, Field(strict=True, allow_inf_nan=False, ge=0, le=MAX_RETRY_DELAY_SECONDS)
]


class EnqueueRequest(BaseModel):
    """One job to create. ``delay_seconds`` and ``run_at`` exclude each other and
    ``continue_after``; a ``run_at`` in the past runs now."""

    model_config = ConfigDict(extra="forbid")

    job: JobName
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: QueueName | None = Field(default=None, description="default: the job's own queue")
    delay_seconds: Seconds | None = None
    run_at: Instant | None = Field(
        default=None, description="ISO-8601 with a time zone, years 1 to 9999 in UTC"
    )
    continue_after: uuid.UUID | None = Field(
        default=None, description="run once this job has Succeeded (or ended: continue_on)"
    )
    continue_on: Literal["succeeded", "finished"] | None = Field(
        default=None,
        description='with continue_after: "succeeded" (default) or "finished" (any ending)',
    )
    retries: Retries | None = None
    retry_delays: list[RetryDelay] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="seconds before retry 1, 2, … (the last repeats); default: the job's own",
    )
    timeout_seconds: PositiveSeconds | None = None
    expire_after_seconds: PositiveSeconds | None = None
    idempotency_key: Annotated[Text, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _exclusive(self) -> EnqueueRequest:
        if self.delay_seconds is not None and self.run_at is not None:
            raise ValueError("give delay_seconds or run_at, not both")
        if self.continue_after is not None and (
            self.delay_seconds is not None or self.run_at is not None
        ):
            raise ValueError("continue_after cannot be combined with delay_seconds or run_at")
        if self.continue_on is not None and self.continue_after is None:
            raise ValueError("continue_on needs continue_after")
        return self


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[EnqueueRequest] = Field(min_length=1, max_length=MAX_BULK)


def error_location(error: Mapping[str, Any]) -> str:
    """Where a pydantic error is, as a request names it (``kwargs.x``, ``jobs[2].queue``)."""
    where = ""
    for item in error.get("loc", ()):
        if item in ("body", "query", "path"):
            continue
        where += f"[{item}]" if isinstance(item, int) else (f".{item}" if where else str(item))
    return where


def describe_validation(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic errors in words, each naming where it is: the message of the API's 422 and of
    a direct client's ``JobValidationError``."""
    parts = []
    for error in errors:
        where = error_location(error)
        message = str(error.get("msg", "invalid"))
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or "invalid request"
