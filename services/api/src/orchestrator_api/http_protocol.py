"""The API server's HTTP/1.1 protocol: uvicorn's (httptools) with a deadline on every request
head, so clients that trickle their headers (or connect and say nothing) are dropped.

Uvicorn arms its keep-alive timer only after an answer, and any byte received disarms it: a
connection that sends one header byte every few seconds is kept forever (issue 11: 200 such
clients were never timed out). Here each connection gets ``head_timeout`` seconds from
connecting, or from its previous answer, to complete the next request's line and headers, and
at most ``max_head_bytes`` for them; a fixed deadline, which trickling does not move. The body
has its own read timeout (``BodyLimitMiddleware``).

A refused request's connection is closed in stages (RFC 9112, section 9.6): the answer and a
half-close, then what the client still sends is read and dropped until it closes, for at most
``LINGER_SECONDS``. Closing at once with the rest of an oversized head unread makes the kernel
answer with a reset, and a client still sending loses the answer it was owed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from orchestrator_api.errors import error_body

MAX_HEAD_BYTES = 64 * 1024
#: How long a refused request's connection is read (and dropped) before it is closed anyway.
LINGER_SECONDS = 5.0


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
        # From the end of one request (its body included) until the next one's headers end.
        self._in_head = True
        self._head_bytes = 0
        self._head_tail = b""  # the head's last bytes: its end may straddle two reads
        self._lingering = False
        self._linger_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a refused request: read only so that no reset is sent
        # Checked before the parser sees the bytes: a read may hold a whole oversized head,
        # which the parser would hand to the application at once.
        if self._in_head and self._head_overflows(data):
            self._refuse(
                b"431 Request Header Fields Too Large",
                "headers_too_large",
                f"the request line and headers are larger than {self.max_head_bytes} bytes",
            )
            return
        super().data_received(data)

    def _head_overflows(self, data: bytes) -> bool:
        """Whether the head under way passes ``max_head_bytes`` with ``data``: its end (the
        empty line) must come within the bytes still allowed."""
        allowed = self.max_head_bytes - self._head_bytes
        window = self._head_tail + data[:allowed]
        if len(data) > allowed and b"\r\n\r\n" not in window and b"\n\n" not in window:
            return True
        self._head_bytes += len(data)
        self._head_tail = window[-3:]
        return False

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The request's body has arrived too: what follows is the next request's head.
        self._in_head = True
        self._head_bytes = 0
        self._head_tail = b""

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Uvicorn armed its keep-alive timer: the connection now waits for a new request.
        if self.timeout_keep_alive_task is not None:
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_overdue)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._in_head or self._head_bytes == 0:
            # Idle, or still sending the body of a request answered already: nothing to answer.
            self.transport.close()
            return
        self._refuse(
            b"408 Request Timeout",
            "request_timeout",
            f"the request line and headers did not arrive within {self.head_timeout:g} s",
        )

    def _refuse(self, status: bytes, code: str, message: str) -> None:
        self._in_head = False
        self._stop_head_timer()
        if self.transport.is_closing():
            return
        self.transport.write(_answer(status, code, message))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # The client's closing (eof_received) then closes the transport.
        self._lingering = True
        self.transport.write_eof()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)


def protocol_class(head_timeout: float, max_head_bytes: int = MAX_HEAD_BYTES) -> type:
    """The protocol for ``uvicorn.Config(http=...)`` with these limits."""
    return type(
        "ApiHttpProtocol",
        (HeadDeadlineProtocol,),
        {"head_timeout": head_timeout, "max_head_bytes": max_head_bytes},
    )
