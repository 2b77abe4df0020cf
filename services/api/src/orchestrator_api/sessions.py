"""Dashboard sessions in the store (``dashboard_sessions``): made by signing in, ended by
signing out or after ``SESSION_SECONDS``, on every API replica alike.

The cookie is a random token. The store keeps its SHA-256 (the session id) and an HMAC of the
token under the key that signed in, so the row alone is no usable cookie, and a session stops
working when its key is removed from ``ORCHESTRATOR_API_KEYS``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.models import DashboardSession
from orchestrator.settings import ApiKey

SESSION_SECONDS = 12 * 3600
_TABLE = DashboardSession.__table__  # type: ignore[attr-defined]
_MAX_TOKEN = 128  # a longer cookie is no token of ours


def session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _proof(key: ApiKey, token: str) -> str:
    message = f"dashboard-session|{token}".encode()
    return hmac.new(key.secret.encode(), message, "sha256").hexdigest()


async def create(engine: AsyncEngine, key: ApiKey, now: datetime | None = None) -> str:
    """A new session for ``key``; the cookie's value. Expired rows are cleared on the way."""
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    async with engine.begin() as conn:
        await conn.execute(sa.delete(_TABLE).where(_TABLE.c.expires_at < now))
        await conn.execute(
            sa.insert(_TABLE).values(
                id=session_id(token),
                key_proof=_proof(key, token),
                created_at=now,
                expires_at=now + timedelta(seconds=SESSION_SECONDS),
            )
        )
    return token


async def key_of(
    engine: AsyncEngine, keys: Sequence[ApiKey], token: str, now: datetime | None = None
) -> ApiKey | None:
    """The configured key whose live session ``token`` is, or None."""
    if not token or len(token) > _MAX_TOKEN:
        return None
    query = sa.select(_TABLE.c.key_proof, _TABLE.c.expires_at).where(
        _TABLE.c.id == session_id(token)
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.expires_at <= (now or datetime.now(UTC)):
        return None
    found = None
    for key in keys:  # every key, in constant time each
        if hmac.compare_digest(_proof(key, token), row.key_proof):
            found = key
    return found


async def revoke(engine: AsyncEngine, token: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.delete(_TABLE).where(_TABLE.c.id == session_id(token)))
