"""Dashboard sessions (``dashboard_sessions``): a row per signed-in browser, keyed by the
SHA-256 of its cookie, holding a proof of the key that signed in (the API's
``orchestrator_api.sessions`` makes and checks both)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.store.tables import Row, sessions


async def delete_expired(conn: AsyncConnection, now: datetime) -> None:
    """Remove the sessions that expired before ``now``."""
    await conn.execute(sa.delete(sessions).where(sessions.c.expires_at < now))


async def add(
    conn: AsyncConnection,
    session_id: str,
    key_proof: str,
    created_at: datetime,
    expires_at: datetime,
) -> None:
    """A new session ``session_id``, live from ``created_at`` until ``expires_at``."""
    await conn.execute(
        sa.insert(sessions).values(
            id=session_id, key_proof=key_proof, created_at=created_at, expires_at=expires_at
        )
    )


async def find(conn: AsyncConnection, session_id: str) -> Row | None:
    """The session's key proof and expiry, or None."""
    query = sa.select(sessions.c.key_proof, sessions.c.expires_at).where(
        sessions.c.id == session_id
    )
    return (await conn.execute(query)).first()


async def delete(conn: AsyncConnection, session_id: str) -> None:
    """End the session ``session_id`` (signing out)."""
    await conn.execute(sa.delete(sessions).where(sessions.c.id == session_id))
