"""The blocking client's HTTP/1.1: kept-alive ``http.client`` connections, failures as httpx's.

httpx costs about a millisecond of CPU per request on a small machine (measured: ~1.5 ms per
``Client.enqueue`` against ~0.4 ms for ``http.client``), which made the client the limit of a
producer enqueueing one job at a time. Requests here are JSON to one API, so a connection pool of
``http.client`` connections does all that is needed; network failures are raised as the httpx
exceptions :class:`~orchestrator.client.Client` has always documented.

A kept-alive connection is one the server may close at any moment once it is idle (the API's
``ORCHESTRATOR_KEEP_ALIVE_SECONDS``, 5 s by default). A request written just as that happens
fails with no answer, so a connection idle for :data:`MAX_IDLE_SECONDS` is not reused, and a
request that failed on a reused connection before any answer is sent once more on a new one when
its method is idempotent (a ``POST`` is never sent twice by this module).
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

#: A connection idle this long is closed rather than reused: below the API's keep-alive (5 s by
#: default), so the client gives it up before the server does.
MAX_IDLE_SECONDS = 2.0
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: The server closed a reused connection before answering (http.client's words for it).
_CLOSED_UNANSWERED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class LeanHTTP:
    """A thread-safe pool of persistent connections to one origin."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        timeout: float,
        *,
        max_idle: float = MAX_IDLE_SECONDS,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._headers = {"Accept": "application/json", **headers}
        self._timeout = timeout
        self._max_idle = max_idle
        #: Idle connections with the monotonic time each became idle, most recent last.
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, str, bytes]:
        """``(status, reason, body)``; raises ``httpx.TransportError`` subclasses on failure."""
        target = self._prefix + path
        if params:
            target += "?" + urlencode(params)
        sent_headers = {**self._headers, **(headers or {})}
        body = None
        if json_body is not None:
            body = json.dumps(
                json_body, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode()
            sent_headers["Content-Type"] = "application/json"
        connection, reused = self._take()
        try:
            return self._exchange(connection, method, target, body, sent_headers)
        except _CLOSED_UNANSWERED as exc:
            if not (reused and method in _IDEMPOTENT):
                raise _as_httpx(exc) from exc
        # The server had closed the idle connection as the request went out: nothing was done.
        try:
            return self._exchange(self._connect(), method, target, body, sent_headers)
        except _CLOSED_UNANSWERED as exc:
            raise _as_httpx(exc) from exc

    def _exchange(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> tuple[int, str, bytes]:
        try:
            connection.request(method, target, body, dict(headers))
            response = connection.getresponse()
            data = response.read()
        except _CLOSED_UNANSWERED:
            connection.close()
            raise  # converted by request(), which may first send it again
        except BaseException as exc:
            connection.close()
            converted = _as_httpx(exc)
            if converted is exc:
                raise
            raise converted from exc
        if response.will_close:
            connection.close()
        else:
            self._give_back(connection)
        return response.status, response.reason, data

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it served a request before."""
        while True:
            with self._lock:
                idle = self._idle.pop() if self._idle else None
            if idle is None:
                return self._connect(), False
            connection, since = idle
            if time.monotonic() - since < self._max_idle and _still_open(connection):
                return connection, True
            connection.close()  # idle too long, or the server closed it (its keep-alive)

    def _give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.append((connection, time.monotonic()))

    def _connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        connection = kind(self._host, self._port, timeout=self._timeout)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise _as_httpx(exc, connecting=True) from exc
        if connection.sock is not None:
            # Small request, small answer: send each at once rather than wait for an ACK.
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """An idle kept-alive connection has nothing to read; readable means closed (or broken)."""
    sock = connection.sock
    if sock is None:
        return False
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def _as_httpx(exc: BaseException, *, connecting: bool = False) -> BaseException:
    if not isinstance(exc, OSError | http.client.HTTPException):
        return exc  # KeyboardInterrupt, a bad body (ValueError, TypeError): as they are
    if isinstance(exc, TimeoutError):
        kind: type[httpx.TransportError] = (
            httpx.ConnectTimeout if connecting else httpx.ReadTimeout
        )
    elif connecting:
        kind = httpx.ConnectError
    elif isinstance(exc, http.client.HTTPException | ConnectionError):
        kind = httpx.RemoteProtocolError
    else:
        kind = httpx.NetworkError
    return kind(f"{type(exc).__name__}: {exc}")
