"""Who may call what: API keys, the dashboard's session cookie, and loopback-only mode.

With keys configured, ``/api/*`` needs ``Authorization: Bearer <secret>`` (401 missing or
unknown, 403 a read key on a write method); ``/hangfire*`` and the API docs (``/docs``,
``/redoc``, ``/openapi.json``) accept that header or the session cookie set by
``POST /hangfire/login`` (a page opened without either is sent there, 303); the cookie never
authorizes ``/api/*``. Unknown bearer keys are throttled per client (``throttle``): past the
burst, 429 with Retry-After before the key is even looked at. With no keys, these paths serve
loopback peers only (the socket's address; forwarded headers never count), each as an admin.
Everything else (``/healthz``, ``/readyz``, ``/metrics``) is always served.

Who the caller turned out to be is left in the request's state as a ``Viewer``.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any, Literal

from sqlalchemy import exc as sa_exc
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.settings import ApiKey
from orchestrator_api import sessions
from orchestrator_api.guards import WRITE_METHODS
from orchestrator_api.middleware import send_error
from orchestrator_api.peers import Proxies, header, is_loopback
from orchestrator_api.throttle import FailureThrottle

SESSION_COOKIE = "orchestrator_session"
SESSION_SECONDS = sessions.SESSION_SECONDS
#: Served to anyone: the login form, its POST, and signing out (each checks its own CSRF token).
OPEN_PATHS = frozenset({"/hangfire/login", "/hangfire/logout"})
#: The dashboard's own scripts and styles (public files; the login page needs them).
OPEN_PREFIX = "/hangfire/static/"
LOGIN_PAGE = "/hangfire/login"
DOCS_PATHS = frozenset({"/docs", "/redoc", "/openapi.json"})


@dataclass(frozen=True)
class Viewer:
    """Who is calling: ``admin`` acts, ``read`` sees; ``session`` is the session id when the
    caller signed in through the form."""

    role: Literal["admin", "read"]
    session: str | None = None


def viewer_of(state: Any) -> Viewer | None:
    viewer = getattr(state, "viewer", None)
    return viewer if isinstance(viewer, Viewer) else None


def find_key(keys: Sequence[ApiKey], presented: str) -> ApiKey | None:
    """The configured key matching ``presented``, compared in constant time against every key."""
    found = None
    candidate = presented.encode()
    for key in keys:
        if hmac.compare_digest(key.secret.encode(), candidate):
            found = key
    return found


def _bearer(scope: Scope) -> str | None:
    value = header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, secret = value.partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""


def session_cookie(raw: str | None) -> str | None:
    """The session token in a ``Cookie`` header, if any."""
    if not raw:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(raw)
    except Exception:
        return None
    morsel = cookies.get(SESSION_COOKIE)
    return morsel.value if morsel is not None else None


def _area(path: str) -> str | None:
    if path == "/api" or path.startswith("/api/"):
        return "api"
    if path == "/hangfire" or path.startswith("/hangfire/"):
        return "dashboard"
    if path in DOCS_PATHS or path.startswith("/docs/"):
        return "docs"
    return None


def _opens_a_page(scope: Scope) -> bool:
    """A browser opening a dashboard page, which is sent to the login form instead of a 401
    (an htmx poll or a form POST still gets the 401)."""
    return scope["method"] == "GET" and header(scope, b"hx-request") is None


async def _see_other(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


class RefusedError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        keys: Sequence[ApiKey],
        throttle: FailureThrottle,
        proxies: Proxies,
    ) -> None:
        self.app = app
        self.keys = list(keys)
        self.throttle = throttle
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        area = _area(path)
        if area is None or path in OPEN_PATHS or path.startswith(OPEN_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            viewer = await self._viewer(scope, allow_cookie=area != "api")
        except RefusedError as refusal:
            if refusal.status == 401 and area == "dashboard" and _opens_a_page(scope):
                await _see_other(send, LOGIN_PAGE)
                return
            await send_error(send, refusal.status, refusal.code, refusal.message, refusal.headers)
            return
        scope.setdefault("state", {})["viewer"] = viewer
        await self.app(scope, receive, send)

    async def _viewer(self, scope: Scope, *, allow_cookie: bool) -> Viewer:
        if not self.keys:
            if is_loopback(scope):
                return Viewer("admin")
            raise RefusedError(
                403,
                "forbidden",
                "no API keys are configured, so only loopback clients are "
                "served; set ORCHESTRATOR_API_KEYS to allow remote access",
            )
        presented = _bearer(scope)
        token = session_cookie(header(scope, b"cookie")) if allow_cookie else None
        if presented is not None:
            key = self._checked_bearer(scope, presented)
            session = None
        elif token is not None:
            key = await self._session_key(scope, token)
            session = sessions.session_id(token) if key is not None else None
        else:
            hint = " or sign in at /hangfire/login" if allow_cookie else ""
            raise RefusedError(
                401,
                "unauthorized",
                f"missing credentials: send 'Authorization: Bearer <API key>'{hint}",
                {"WWW-Authenticate": "Bearer"},
            )
        if key is None:
            raise RefusedError(
                401,
                "unauthorized",
                "unknown API key or ended session",
                {"WWW-Authenticate": "Bearer"},
            )
        if key.role != "admin" and scope["method"] in WRITE_METHODS:
            raise RefusedError(
                403, "forbidden", "this API key may only read; writing needs an admin key"
            )
        return Viewer(key.role, session)

    def _checked_bearer(self, scope: Scope, presented: str) -> ApiKey | None:
        client = self.proxies.client(scope)
        wait = self.throttle.retry_after(client)
        if wait is not None:
            raise RefusedError(
                429,
                "too_many_failures",
                f"too many unknown API keys from this client; try again in {wait} s",
                {"Retry-After": str(wait)},
            )
        key = find_key(self.keys, presented)
        if key is None:
            self.throttle.failed(client)
        return key

    async def _session_key(self, scope: Scope, token: str) -> ApiKey | None:
        engine = scope["app"].state.runtime.engine
        try:
            return await sessions.key_of(engine, self.keys, token)
        except (OSError, sa_exc.OperationalError, sa_exc.InterfaceError):
            raise RefusedError(
                503, "store_unavailable", "the job store cannot be reached to check the session"
            ) from None
