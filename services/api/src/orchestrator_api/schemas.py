"""Answers of the jobs endpoints (their request bodies are :mod:`orchestrator.enqueue_requests`)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel


class EnqueueResponse(BaseModel):
    id: uuid.UUID
    state: str


class BulkResponse(BaseModel):
    ids: list[uuid.UUID]
