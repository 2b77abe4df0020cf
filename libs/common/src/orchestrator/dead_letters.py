"""Dead letters in the store: recorded by the janitor, listed, replayed or discarded by a person.

RabbitMQ dead-letters a message from a work queue when a worker rejects it (its body is not a job
message, or it names no job) or when its deliveries reach the quorum delivery limit (each one
crashed a worker, or lost its channel, before the claim committed). The janitor drains
``<ns>.dead`` into the ``dead_letters`` table with :func:`record`, acking only after commit; a
copy delivered again (the janitor stopped before its ack) has the same fingerprint and is recorded
once. A dead letter naming an ``Enqueued`` job fails that job ("Dead-lettered: <why>"), so the job
is visible where people look, and :func:`replay` knows to requeue it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator import interventions, outbox, outcomes, store
from orchestrator.broker import decode_job_id
from orchestrator.errors import ConflictError, JobNotFoundError
from orchestrator.lifecycle import Change, State
from orchestrator.store import dead_letters as store_dead_letters
from orchestrator.store.tables import Row
from orchestrator.transitions import Transitions

PREFIX = "Dead-lettered: "
ERROR_TYPE = "DeadLettered"


@dataclass(frozen=True)
class Letter:
    """One message taken from the dead-letter queue, as the janitor saw it."""

    body: bytes
    headers: Mapping[str, Any]
    message_id: str | None
    #: Job queue of the work queue it died in (None: another queue).
    queue: str | None


def plain(value: Any) -> Any:
    """AMQP header values (datetimes, bytes, nested tables) as JSON values."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def last_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    """The newest ``x-death`` entry (RabbitMQ puts it first), or an empty one."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return {}


def fingerprint(letter: Letter, headers: Mapping[str, Any]) -> str:
    deaths = json.dumps(headers.get("x-death"), sort_keys=True, default=str)
    digest = hashlib.sha256()
    for part in (letter.message_id or "", deaths, hashlib.sha256(letter.body).hexdigest()):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def explain(reason: str, job_id: uuid.UUID | None, job_exists: bool, queue: str) -> str:
    """Why the message died, in words."""
    if job_id is None:
        return f"the message body in {queue} is not a job message"
    missing = "" if job_exists else f"; it names job {job_id}, which does not exist"
    if reason == "rejected" and not job_exists:
        return f"the message in {queue} names job {job_id}, which does not exist"
    return {
        "delivery_limit": (
            f"delivered to workers from {queue} up to the delivery limit without a claim "
            "committing (each delivery crashed its worker or lost its channel)"
        ),
        "rejected": f"rejected by a worker of {queue}",
        "expired": f"expired in {queue}",
        "maxlen": f"{queue} was full",
    }.get(reason, f"dead-lettered from {queue} ({reason})") + missing


@dataclass(frozen=True)
class New:
    """A dead letter new to the store: what a person watching the janitor is told."""

    job_id: uuid.UUID | None
    job_name: str | None
    reason: str
    why: str
    failed: bool


async def record(
    conn: AsyncConnection,
    letters: Sequence[Letter],
    now: datetime,
    *,
    body_limit: int,
    transitions: Transitions,
    new: list[New] | None = None,
) -> tuple[int, int]:
    """Store new dead letters and fail the Enqueued jobs they name, in the caller's transaction.

    Returns (dead letters new to the store, jobs failed); each new one is appended to ``new``
    (for the caller to report once the transaction has committed)."""
    recorded = failed = 0
    named = [decode_job_id(letter.body) for letter in letters]
    # The jobs to fail, locked in ascending id order first (one move per letter follows).
    locked = await transitions.lock(conn, [i for i in named if i is not None], {State.ENQUEUED})
    for letter in letters:
        headers = plain(dict(letter.headers))
        death = last_death(headers)
        job_id = decode_job_id(letter.body)
        job, job_name = await _job_state(conn, job_id)
        reason = str(death.get("reason") or "unknown")
        why = explain(reason, job_id, job is not None, str(death.get("queue") or "?"))
        row = {
            "fingerprint": fingerprint(letter, headers),
            "message_id": letter.message_id,
            "job_id": job_id,
            "queue": letter.queue,
            "source_queue": death.get("queue"),
            "reason": reason[:40],
            "why": why,
            "death_count": int(death.get("count") or 1),
            "body": letter.body[:body_limit],
            "body_size": len(letter.body),
            "headers": headers,
            "first_seen_at": now,
        }
        if not await store_dead_letters.add(conn, row):
            continue  # the same dead letter again: recorded before
        recorded += 1
        failing = 0
        if (
            job_id is not None
            and job == State.ENQUEUED.value
            and (locked is None or job_id in locked)
        ):
            failing = await _fail(conn, transitions, job_id, why, now)
        failed += failing
        if new is not None:
            new.append(New(job_id, job_name, reason, why, bool(failing)))
    return recorded, failed


async def _job_state(
    conn: AsyncConnection, job_id: uuid.UUID | None
) -> tuple[str | None, str | None]:
    """The named job's state and name (None, None: no job named, or none by that id)."""
    if job_id is None:
        return None, None
    row = await store_dead_letters.named_job(conn, job_id)
    return (row.state, row.name) if row is not None else (None, None)


async def _fail(
    conn: AsyncConnection, transitions: Transitions, job_id: uuid.UUID, why: str, now: datetime
) -> int:
    moved = await transitions.move(
        conn,
        [job_id],
        expected={State.ENQUEUED},
        target=State.FAILED,
        change=Change(
            PREFIX + why,
            values={"error_type": ERROR_TYPE, "error_message": why, "finished_at": now},
        ),
        now=now,
    )
    return len(moved)


def public(row: Row) -> dict[str, Any]:
    """A dead letter as the HTTP API shows it (the body as text when it is UTF-8)."""
    try:
        body, encoding = row.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(row.body).decode(), "base64"
    return {
        "id": row.id,
        "job_id": str(row.job_id) if row.job_id else None,
        "queue": row.queue,
        "source_queue": row.source_queue,
        "reason": row.reason,
        "why": row.why,
        "death_count": row.death_count,
        "message_id": row.message_id,
        "body": body,
        "body_encoding": encoding,
        "body_size": row.body_size,
        "body_truncated": len(row.body) < row.body_size,
        "headers": outcomes.showable(row.headers),  # e.g. a NaN float header, kept by SQLite
        "first_seen_at": row.first_seen_at.isoformat(),
    }


async def list_page(
    conn: AsyncConnection, *, limit: int, cursor: int | None
) -> tuple[list[Row], int | None]:
    """Newest first, keyset-paged on the id; returns the rows and the next cursor."""
    rows = await store_dead_letters.newest(conn, limit + 1, before=cursor)
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


async def get(conn: AsyncConnection, letter_id: int) -> Row:
    row = await store_dead_letters.get(conn, letter_id)
    if row is None:
        raise JobNotFoundError(f"no dead letter with id {letter_id}")
    return row


async def discard(conn: AsyncConnection, letter_id: int) -> None:
    await get(conn, letter_id)
    await store_dead_letters.delete(conn, letter_id)


async def replay(
    conn: AsyncConnection, transitions: Transitions, letter_id: int, now: datetime
) -> tuple[dict[str, Any], list[outbox.Pending]]:
    """Send the dead letter's job again through the outbox, then forget the dead letter.

    A job Failed by this dead-lettering is requeued (fresh retry budget); any other job gets a
    new wake-up on its original queue, which its claim takes or drops as its state says."""
    row = await get(conn, letter_id)
    if row.job_id is None:
        raise ConflictError(
            f"dead letter {letter_id} is not a job message; there is nothing to replay, "
            "only to discard"
        )
    try:
        job = await store.get_job(conn, row.job_id)
    except JobNotFoundError:
        raise ConflictError(
            f"dead letter {letter_id} names job {row.job_id}, which does not exist; discard it"
        ) from None
    if await _failed_by_dead_letter(conn, job):
        reason = f"Replayed dead letter {letter_id}"
        pending = await interventions.requeue_job(conn, transitions, job.id, now, reason)
        action, state = "requeued", State.ENQUEUED.value
    else:
        publication = outbox.Publication(job.id, row.queue or job.queue, job.trace_context or {})
        pending = await outbox.add(conn, [publication], now)
        action, state = "republished", job.state
    await store_dead_letters.delete(conn, letter_id)
    return {"id": letter_id, "job_id": str(job.id), "action": action, "state": state}, pending


async def _failed_by_dead_letter(conn: AsyncConnection, job: Row) -> bool:
    if job.state != State.FAILED.value:
        return False
    history = await store.get_history(conn, job.id)
    return bool(history) and (history[-1].reason or "").startswith(PREFIX)
