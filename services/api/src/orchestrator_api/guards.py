"""Web pages cannot drive the API: the Host check (DNS rebinding) and the Origin check
(cross-site requests), before authentication.

A page on another site can make a browser send simple requests here (form posts, body-less
POSTs) and, by pointing its own host name at 127.0.0.1 (DNS rebinding), even read the answers
under that name. So:

- **Host.** With no keys, a request under a host name that is not a loopback name
  (``localhost``, ``127.x.x.x``, ``[::1]``, any port) or one of ``ORCHESTRATOR_ALLOWED_HOSTS`` is
  refused (400); probes and scrapes (``/healthz``, ``/readyz``, ``/metrics``) also accept any IP
  literal, which is what kubelet and Prometheus send and what no rebinding can produce. With keys
  the host is checked only when allowed hosts are configured, and never for probes and scrapes
  (a rebound page has no key to send, and the session cookie belongs to the real name).
- **Origin.** A state-changing request (POST, PUT, PATCH, DELETE) carrying ``Sec-Fetch-Site:
  cross-site``/``same-site``, or an ``Origin`` whose host is not the request's own and that is
  not in ``ORCHESTRATOR_ALLOWED_ORIGINS``, is refused (403). Browsers add those headers and pages
  cannot forge them; curl, httpx and the project's Client send neither, so they pass.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator_api.middleware import send_error
from orchestrator_api.peers import Proxies, header, host_name

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CROSS = frozenset({"cross-site", "same-site"})
_SHOWN = 100  # characters of a refused header quoted in the message


def is_loopback_name(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _matches(name: str, pattern: str) -> bool:
    pattern = pattern.strip().lower().rstrip(".")
    if pattern == "*":
        return True
    if pattern.startswith("."):
        return name == pattern[1:] or name.endswith(pattern)
    return name == host_name(pattern)


def _origin(text: str) -> str:
    """``scheme://host[:port]`` lower-cased, for comparing configured origins."""
    return text.strip().lower().rstrip("/")


class BrowserGuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        keyless: bool,
        allowed_hosts: Sequence[str],
        allowed_origins: Sequence[str],
        proxies: Proxies,
    ) -> None:
        self.app = app
        self.keyless = keyless
        self.allowed_hosts = [host.strip().lower() for host in allowed_hosts if host.strip()]
        self.allowed_origins = frozenset(_origin(origin) for origin in allowed_origins)
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = self.proxies.host(scope)
        problem = self._host_problem(host, scope["path"])
        if problem is not None:
            await send_error(send, 400, "host_not_allowed", problem)
            return
        if scope["method"] in WRITE_METHODS:
            problem = self._cross_site_problem(scope, host)
            if problem is not None:
                await send_error(send, 403, "cross_site_request", problem)
                return
        await self.app(scope, receive, send)

    def _host_problem(self, host: str | None, path: str) -> str | None:
        # With keys, probes and scrapes answer under any name (Prometheus in compose scrapes
        # ``api:5001``): they are served to every network client anyway.
        if not self.keyless and (not self.allowed_hosts or path in PROBES):
            return None
        if host is None:
            return "the request has no Host header"
        name = host_name(host)
        if is_loopback_name(name) or any(_matches(name, p) for p in self.allowed_hosts):
            return None
        if path in PROBES and _is_ip_literal(name):
            return None
        shown = host[:_SHOWN]
        if self.keyless:
            return (
                f"the host name {shown!r} is not served: with no API keys configured only "
                "loopback names (localhost, 127.0.0.1, [::1]) and ORCHESTRATOR_ALLOWED_HOSTS are, "
                "so a page that points its own name at this machine (DNS rebinding) gets nothing"
            )
        return f"the host name {shown!r} is not in ORCHESTRATOR_ALLOWED_HOSTS"

    def _cross_site_problem(self, scope: Scope, host: str | None) -> str | None:
        fetch_site = (header(scope, b"sec-fetch-site") or "").strip().lower()
        if fetch_site in _CROSS:
            return (
                f"a state-changing request started by another site (Sec-Fetch-Site: "
                f"{fetch_site}) is refused; nothing was changed"
            )
        origin = header(scope, b"origin")
        if origin is None or self._own_origin(origin, host):
            return None
        return (
            f"a state-changing request from the page at Origin {origin[:_SHOWN]!r} is refused "
            "(not this API's own origin nor one of ORCHESTRATOR_ALLOWED_ORIGINS); nothing was "
            "changed. Requests without an Origin header (curl, the client) are not affected"
        )

    def _own_origin(self, origin: str, host: str | None) -> bool:
        if _origin(origin) in self.allowed_origins:
            return True
        # The scheme is not compared: behind a TLS proxy the page is https and the request
        # reaching here is http; the host and port are what separate one site from another.
        parts = urlsplit(origin.strip())
        return host is not None and bool(parts.netloc) and parts.netloc.lower() == host
