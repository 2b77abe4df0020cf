"""Pure ASGI middleware: the request body limit and read timeout, security headers, per-route
request counting, and the server span of every request."""

from __future__ import annotations

import asyncio
import logging

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator import tracing
from orchestrator.metrics import HTTP_REQUESTS
from orchestrator_api.errors import error_body

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})
log = logging.getLogger(__name__)

#: The dashboard's pages: scripts and styles from this origin only (its vendored htmx runs with
#: ``allowEval: false`` and no indicator styles, so neither needs 'unsafe-*'), never framed.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: Swagger UI and ReDoc (served from local files) start with an inline script and style
#: themselves inline; still nothing from another origin.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")


async def send_error(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    body = error_body(code, message)
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class UnexpectedErrorMiddleware:
    """Answers an unexpected exception with the JSON 500 itself, and keeps the connection.

    Starlette's outermost error middleware answers too, but then raises the exception again
    for the server to log, and uvicorn closes a connection whose app raised after answering:
    every client of a keep-alive connection would pay for one bad request. Installed innermost
    (inside the metrics and tracing middleware, which see the 500), around the routes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def observe(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, observe)
        except Exception as exc:
            if started:  # too late for an answer: the server must cut the response short
                raise
            log.exception("unhandled error in %s %s", scope["method"], route_template(scope))
            trace.get_current_span().record_exception(exc)  # bounded by the span limits
            await send_error(
                send, 500, "internal_error", "an unexpected error occurred; see the API's log"
            )


class BodyLimitMiddleware:
    """Refuses a body over ``limit`` bytes with 413 while reading it, and one that has not
    fully arrived ``timeout`` seconds after the headers with 408 (closing the connection).

    A declared Content-Length over the limit is refused before reading anything; otherwise the
    body is read chunk by chunk and counted (chunked uploads included), and the app only runs once
    the whole body is known to fit. The timeout is a deadline for the whole body, so a client
    trickling bytes cannot hold a connection and a request task open.
    """

    def __init__(self, app: ASGIApp, limit: int, timeout: float = 30.0) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is larger than the limit of {self.limit} bytes"
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await send_error(send, 413, "body_too_large", too_large)
            return
        try:
            async with asyncio.timeout(self.timeout):
                chunks = await self._read(receive)
        except TimeoutError:
            message = f"the request body did not arrive within {self.timeout:g} s"
            await send_error(send, 408, "body_timeout", message, {"Connection": "close"})
            return
        if chunks is None:
            return  # the client went away
        if isinstance(chunks, int):
            await send_error(send, 413, "body_too_large", too_large)
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> list[bytes] | int | None:
        """The body's chunks; its size so far once over the limit; None on a disconnect."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return size
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks


class SecurityHeadersMiddleware:
    """Headers every answer gets unless it set its own: ``nosniff``, no referrer to other
    origins (not ``no-referrer``: with it browsers send ``Origin: null`` on the dashboard's own
    form posts, which the Origin check refuses), readable by this origin only, ``no-store``
    (answers are live state and may be private); pages of the dashboard and the docs are never
    framed and get their content policy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _security_headers(scope.get("path", ""))

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add_headers)


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
        (b"cache-control", b"no-store"),
    ]
    policy = None
    if path == "/hangfire" or path.startswith("/hangfire/"):
        policy = DASHBOARD_CSP
    elif path in DOCS_PATHS or path.startswith("/docs/"):
        policy = DOCS_CSP
    if policy is not None:
        headers += [(b"x-frame-options", b"DENY"), (b"content-security-policy", policy.encode())]
    return headers


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestMetricsMiddleware:
    """Counts requests by method, route template (never the raw path) and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            HTTP_REQUESTS.labels(scope["method"], self._template(scope), str(status)).inc()

    @staticmethod
    def _template(scope: Scope) -> str:
        return route_template(scope)


#: Probes and scrapes every few seconds would drown the traces users look for.
_UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})


class TracingMiddleware:
    """The server span of each request: a child of the caller's ``traceparent`` when it sends
    one, and the parent of everything the request does (a job it enqueues keeps its context).

    Named ``"<METHOD> <route template>"`` once routing has matched, so a raw path (a job id)
    never becomes a span name; 5xx answers and exceptions mark the span as an error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in _UNTRACED:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        with tracing.tracer.start_as_current_span(
            method,
            context=tracing.context_from(headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope.get("path", "")},
        ) as span:

            async def observe(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, observe)
            finally:
                template = route_template(scope)
                span.set_attribute("http.route", template)
                span.update_name(f"{method} {template}")


def route_template(scope: Scope) -> str:
    """The matched route's path template, never the raw path (a bounded label or span name)."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    # Refused before routing (auth, body limit) or no such route: label by area only, so a
    # raw path never becomes a label value.
    raw: str = scope.get("path", "")
    if raw == "/api" or raw.startswith("/api/"):
        return "/api/*"
    if raw == "/hangfire" or raw.startswith("/hangfire/"):
        return "/hangfire/*"
    return "<unmatched>"
