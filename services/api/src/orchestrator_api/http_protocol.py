"""The API server's HTTP/1.1 protocol: uvicorn's (httptools) with a deadline on every request
head, so clients that trickle their headers (or connect and say nothing) are dropped.

Uvicorn arms its keep-alive timer only after an answer, and any byte received disarms it: a
connection that sends one header byte every few seconds is kept forever (issue 11: 200 such
clients were never timed out). Here each connection gets ``head_timeout`` seconds from
connecting, or from its previous answer, to complete the next request's line and headers, and
at most ``max_head_bytes`` for them; a fixed deadline, which trickling does not move. The body
has its own read timeout (``BodyLimitMiddleware``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from orchestrator_api.errors import error_body

MAX_HEAD_BYTES = 64 * 1024


def _answer(status: bytes, code: str, message: str) -> bytes:
    body = error_body(code, message)
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


class HeadDeadlineProtocol(HttpToolsProtocol):
    head_timeout: float = 10.0
    max_head_bytes: int = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse(
                b"431 Request Header Fields Too Large",
                "headers_too_large",
                f"the request line and headers are larger than {self.max_head_bytes} bytes",
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Uvicorn armed its keep-alive timer: the connection now waits for a new request.
        if self.timeout_keep_alive_task is not None:
            self._await_head()

    def _await_head(self) -> None:
        self._stop_head_timer()
        self._in_head = True
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_overdue)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes == 0:
            self.transport.close()  # an idle connection: nothing to answer
            return
        self._refuse(
            b"408 Request Timeout",
            "request_timeout",
            f"the request line and headers did not arrive within {self.head_timeout:g} s",
        )

    def _refuse(self, status: bytes, code: str, message: str) -> None:
        self._in_head = False
        self._stop_head_timer()
        if not self.transport.is_closing():
            self.transport.write(_answer(status, code, message))
            self.transport.close()


def protocol_class(head_timeout: float, max_head_bytes: int = MAX_HEAD_BYTES) -> type:
    """The protocol for ``uvicorn.Config(http=...)`` with these limits."""
    return type(
        "ApiHttpProtocol",
        (HeadDeadlineProtocol,),
        {"head_timeout": head_timeout, "max_head_bytes": max_head_bytes},
    )
