"""``/api/v1/dead-letters``: messages RabbitMQ dead-lettered, as the janitor recorded them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from orchestrator import bounds, dead_letters
from orchestrator.bounds import Int64Id
from orchestrator.db import db_now
from orchestrator_api.errors import ApiError, documented
from orchestrator_api.runtime import runtime_of

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead letters"])


def _cursor(text: str | None) -> int | None:
    if text is None:
        return None
    cursor = bounds.id_cursor(text)
    if cursor is None:
        raise ApiError(422, "invalid_request", "cursor: not a cursor this API returned")
    return cursor


LetterId = Annotated[Int64Id, Path(description="a dead letter's id")]


@router.get("", responses=documented(422))
async def list_dead_letters(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Newest first, keyset-paged: pass ``next_cursor`` back as ``cursor``."""
    async with runtime_of(request).engine.connect() as conn:
        rows, after = await dead_letters.list_page(conn, limit=limit, cursor=_cursor(cursor))
    return {
        "items": [dead_letters.public(row) for row in rows],
        "next_cursor": None if after is None else str(after),
    }


@router.get("/{letter_id}", responses=documented(404, 422))
async def get_dead_letter(letter_id: LetterId, request: Request) -> dict[str, Any]:
    async with runtime_of(request).engine.connect() as conn:
        return dead_letters.public(await dead_letters.get(conn, letter_id))


@router.post(
    "/{letter_id}/replay", responses=documented(404, 409, 422, e409="Nothing to replay")
)
async def replay_dead_letter(letter_id: LetterId, request: Request) -> dict[str, Any]:
    """Requeue the job it failed, or publish its job's message again to its original queue
    (through the outbox); the dead letter is then removed."""
    runtime = runtime_of(request)
    async with runtime.engine.begin() as conn:
        now = await db_now(conn)
        answer, pending = await dead_letters.replay(conn, runtime.transitions, letter_id, now)
    runtime.submit(pending)
    return answer


@router.delete("/{letter_id}", responses=documented(404, 422))
async def discard_dead_letter(letter_id: LetterId, request: Request) -> dict[str, Any]:
    async with runtime_of(request).engine.begin() as conn:
        await dead_letters.discard(conn, letter_id)
    return {"id": letter_id, "discarded": True}
