"""Request bodies of the jobs endpoints."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from orchestrator.settings import QUEUE_NAME_PATTERN

MAX_BULK = 10_000

QueueName = Annotated[
    str, Field(pattern=QUEUE_NAME_PATTERN.pattern, description="lowercase letters, digits, _ -")
]


class EnqueueRequest(BaseModel):
    """One job to create. ``delay_seconds`` and ``run_at`` exclude each other and
    ``continue_after``; a ``run_at`` in the past runs now."""

    model_config = ConfigDict(extra="forbid")

    job: str = Field(min_length=1, max_length=200, description="a name from the catalog")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: QueueName | None = Field(default=None, description="default: the job's own queue")
    delay_seconds: float | None = Field(default=None, ge=0, le=10 * 365 * 24 * 3600)
    run_at: AwareDatetime | None = Field(default=None, description="ISO-8601 with a time zone")
    continue_after: uuid.UUID | None = Field(
        default=None, description="run once this job has Succeeded (or ended: continue_on)"
    )
    continue_on: Literal["succeeded", "finished"] | None = Field(
        default=None,
        description='with continue_after: "succeeded" (default) or "finished" (any ending)',
    )
    retries: int | None = Field(default=None, ge=0, le=100)
    retry_delays: list[Annotated[float, Field(ge=0, le=30 * 24 * 3600)]] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="seconds before retry 1, 2, … (the last repeats); default: the job's own",
    )
    timeout_seconds: float | None = Field(default=None, gt=0)
    expire_after_seconds: float | None = Field(default=None, gt=0)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

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

    def request_hash(self) -> str:
        """SHA-256 of the canonical body: what an idempotency key promises not to change."""
        canonical = json.dumps(
            self.model_dump(mode="json", exclude={"idempotency_key"}),
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[EnqueueRequest] = Field(min_length=1, max_length=MAX_BULK)


class EnqueueResponse(BaseModel):
    id: uuid.UUID
    state: str


class BulkResponse(BaseModel):
    ids: list[uuid.UUID]
