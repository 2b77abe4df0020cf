"""Who may call what: API keys, the dashboard's session cookie, and loopback-only mode.

With keys configured, ``/api/*`` needs ``Authorization: Bearer <secret>`` (401 missing or
unknown, 403 a read key on a write method); ``/hangfire*`` accepts that header or the session
cookie set by ``POST /hangfire/login`` (a page opened without either is sent there, 303); the
cookie never authorizes ``/api/*``. With no keys, ``/api/*`` and ``/hangfire*`` serve loopback
peers only (the socket's address; forwarded headers never count). Everything else
(``/healthz``, ``/readyz``, ``/metrics``) is always served.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Sequence
from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.settings import ApiKey
from orchestrator_api.middleware import send_error

SESSION_COOKIE = "orchestrator_session"
SESSION_SECONDS = 12 * 3600
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Served to anyone: the login form, its POST, and signing out.
OPEN_PATHS = frozenset({"/hangfire/login", "/hangfire/logout"})
#: The dashboard's own scripts and styles (public files; the login page needs them).
OPEN_PREFIX = "/hangfire/static/"
LOGIN_PAGE = "/hangfire/login"


def find_key(keys: Sequence[ApiKey], presented: str) -> ApiKey | None:
    """The configured key matching ``presented``, compared in constant time against every key."""
    found = None
    candidate = presented.encode()
    for key in keys:
        if hmac.compare_digest(key.secret.encode(), candidate):
            found = key
    return found


def _signature(key: ApiKey, expires: int) -> str:
    # Signed with the key itself: valid on every replica, revoked when the key is removed.
    message = f"hangfire-session|{key.role}|{expires}".encode()
    return hmac.new(key.secret.encode(), message, hashlib.sha256).hexdigest()


def session_token(key: ApiKey, now: float | None = None) -> str:
    expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
    return f"{expires}.{_signature(key, expires)}"


def key_of_session(keys: Sequence[ApiKey], token: str, now: float | None = None) -> ApiKey | None:
    expires_text, _, signature = token.partition(".")
    try:
        expires = int(expires_text)
    except ValueError:
        return None
    if expires < (now if now is not None else time.time()):
        return None
    found = None
    for key in keys:
        if hmac.compare_digest(_signature(key, expires), signature):
            found = key
    return found


def is_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _bearer(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, secret = value.partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""


def _cookie(scope: Scope) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(raw)
    except Exception:
        return None
    morsel = cookies.get(SESSION_COOKIE)
    return morsel.value if morsel is not None else None


def _opens_a_page(scope: Scope) -> bool:
    """A browser opening a dashboard page, which is sent to the login form instead of a 401
    (an htmx poll or a form POST still gets the 401)."""
    return scope["method"] == "GET" and _header(scope, b"hx-request") is None


async def _see_other(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


class AuthMiddleware:
    def __init__(self, app: ASGIApp, keys: Sequence[ApiKey]) -> None:
        self.app = app
        self.keys = list(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        is_api = path == "/api" or path.startswith("/api/")
        is_dashboard = path == "/hangfire" or path.startswith("/hangfire/")
        if not (is_api or is_dashboard) or path in OPEN_PATHS or path.startswith(OPEN_PREFIX):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope, allow_cookie=is_dashboard)
        if refusal is not None:
            status, code, message = refusal
            if status == 401 and is_dashboard and _opens_a_page(scope):
                await _see_other(send, LOGIN_PAGE)
                return
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            await send_error(send, status, code, message, headers)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, *, allow_cookie: bool) -> tuple[int, str, str] | None:
        if not self.keys:
            if is_loopback(scope):
                return None
            return (
                403,
                "forbidden",
                "no API keys are configured, so only loopback clients are "
                "served; set ORCHESTRATOR_API_KEYS to allow remote access",
            )
        key = None
        presented = _bearer(scope)
        if presented is not None:
            key = find_key(self.keys, presented)
        elif allow_cookie and (token := _cookie(scope)) is not None:
            key = key_of_session(self.keys, token)
        if key is None:
            if presented is None and (not allow_cookie or _cookie(scope) is None):
                hint = " or sign in at /hangfire/login" if allow_cookie else ""
                return (
                    401,
                    "unauthorized",
                    f"missing credentials: send 'Authorization: Bearer <API key>'{hint}",
                )
            return (401, "unauthorized", "unknown API key or expired session")
        if key.role != "admin" and scope["method"] in WRITE_METHODS:
            return (403, "forbidden", "this API key may only read; writing needs an admin key")
        return None
