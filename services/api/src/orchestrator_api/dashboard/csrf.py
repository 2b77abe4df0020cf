"""The dashboard's CSRF tokens, bound to the viewer (issue 11: a planted cookie plus the same
value in a form must not act).

A form's token is an HMAC, under a server secret, of the viewer's binding: the session id when
signed in through the form, otherwise a random ``orchestrator_csrf`` cookie of the browser (the
login form, loopback use without keys, a bearer-key viewer). Another port of the same host can
plant any cookie, but not the token that goes with it. The secret: with keys, derived from every
configured key (the same on every replica; it changes with the keys); without keys, random per
process (loopback-only use is one process).
"""

from __future__ import annotations

import base64
import hmac
import secrets
from collections.abc import Mapping, Sequence

from orchestrator.settings import ApiKey
from orchestrator_api.auth import SESSION_COOKIE
from orchestrator_api.sessions import session_id

CSRF_COOKIE = "orchestrator_csrf"
_NONCE_LENGTHS = range(32, 129)


def csrf_secret(keys: Sequence[ApiKey]) -> bytes:
    if not keys:
        return secrets.token_bytes(32)
    material = "\n".join(sorted(key.secret for key in keys)).encode()
    return hmac.new(b"orchestrator-dashboard-csrf", material, "sha256").digest()


def binding(cookies: Mapping[str, str]) -> str | None:
    """What the viewer's token is bound to, from its cookies; None before it has either."""
    session = cookies.get(SESSION_COOKIE)
    if session:
        return f"session:{session_id(session)}"
    nonce = cookies.get(CSRF_COOKIE)
    if nonce and len(nonce) in _NONCE_LENGTHS:
        return f"browser:{nonce}"
    return None


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def token_for(secret: bytes, bound_to: str) -> str:
    digest = hmac.new(secret, f"csrf|{bound_to}".encode(), "sha256").digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def valid(secret: bytes, cookies: Mapping[str, str], presented: object) -> bool:
    bound_to = binding(cookies)
    if bound_to is None or not isinstance(presented, str):
        return False
    return hmac.compare_digest(token_for(secret, bound_to), presented)
