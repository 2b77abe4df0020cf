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

from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.settings import ApiKey
from orchestrator.store import sessions as store_sessions

SESSION_SECONDS = 12 * 3600
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
        await store_sessions.delete_expired(conn, now)
        expires_at = now + timedelta(seconds=SESSION_SECONDS)
        await store_sessions.add(conn, session_id(token), _proof(key, token), now, expires_at)
    return token


async def key_of(
    engine: AsyncEngine, keys: Sequence[ApiKey], token: str, now: datetime | None = None
) -> ApiKey | None:
    """The configured key whose live session ``token`` is, or None."""
    if not token or len(token) > _MAX_TOKEN:
        return None
    async with engine.connect() as conn:
        row = await store_sessions.find(conn, session_id(token))
    if row is None or row.expires_at <= (now or datetime.now(UTC)):
        return None
    found = None
    for key in keys:  # every key, in constant time each
        if hmac.compare_digest(_proof(key, token), row.key_proof):
            found = key
    return found


async def revoke(engine: AsyncEngine, token: str) -> None:
    async with engine.begin() as conn:
        await store_sessions.delete(conn, session_id(token))
