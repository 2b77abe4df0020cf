"""The blocking client's own HTTP/1.1 (orchestrator.lean_http) against a real HTTP server.

A standard-library server on a free port stands in for the API: these tests are about the
connections (kept alive, reopened after the server closed them, shared by threads) and about what
the client raises, not about the API's answers (the e2e tests drive the real API this way).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from orchestrator import Client, JobCall
from orchestrator.errors import ApiError
from orchestrator.lean_http import LeanHTTP


@dataclass
class Seen:
    connections: int = 0
    requests: list[dict[str, object]] = field(default_factory=list)
    close_after_answer: bool = False
    #: Close a kept-alive connection on its next request without answering: what a server's
    #: keep-alive timeout does when it fires just as the request arrives.
    drop_reused: bool = False
    closed: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))


def _handler(seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            seen.connections += 1
            self.answered = 0

        def handle_one_request(self) -> None:
            if seen.drop_reused and self.answered:
                self.rfile.readline()  # the request has arrived; close without an answer
                self.close_connection = True
                return
            super().handle_one_request()
            self.answered += 1

        def finish(self) -> None:
            super().finish()
            # The socket server closes the socket after this returns; end it here so a test
            # woken by ``closed`` finds it closed.
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            seen.closed.release()

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length)) if length else None
            seen.requests.append(
                {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
            )
            if body and body.get("job") == "refused":
                self._answer(422, {"error": {"code": "invalid_job", "message": "no such job"}})
            else:
                self._answer(201, {"id": f"id-{body['args'][0] if body else 0}"})

        def do_GET(self) -> None:
            seen.requests.append({"path": self.path, "body": None, "auth": None})
            self._answer(200, {"items": [], "next_cursor": None})

        def _answer(self, status: int, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if seen.close_after_answer:
                self.close_connection = True

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(seen))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_one_connection_serves_many_requests(server: tuple[str, Seen]) -> None:
    url, seen = server
    with Client(url, api_key="k" * 16) as client:
        ids = [client.enqueue(JobCall.named("add", i)) for i in range(20)]
        client.list(state="Failed", limit=5)
    assert ids == [f"id-{i}" for i in range(20)]
    assert seen.connections == 1
    assert seen.requests[0]["path"] == "/api/v1/jobs"
    assert seen.requests[0]["body"] == {"job": "add", "args": [0], "kwargs": {}}
    assert seen.requests[0]["auth"] == "Bearer " + "k" * 16
    assert seen.requests[-1]["path"] == "/api/v1/jobs?state=Failed&limit=5"


def test_a_connection_the_server_closed_is_replaced(server: tuple[str, Seen]) -> None:
    url, seen = server
    seen.close_after_answer = True  # like a keep-alive timeout ending each idle connection
    ids = []
    with Client(url) as client:
        for i in range(5):
            ids.append(client.enqueue(JobCall.named("add", i)))
            assert seen.closed.acquire(timeout=30)  # the server has closed it
    assert ids == [f"id-{i}" for i in range(5)]
    assert seen.connections == 5


def test_a_connection_idle_too_long_is_not_reused(server: tuple[str, Seen]) -> None:
    url, seen = server
    seen.drop_reused = True
    lean = LeanHTTP(url, {}, timeout=10, max_idle=0.2)
    try:
        assert lean.request("POST", "/api/v1/jobs", json_body={"args": [1]})[0] == 201
        time.sleep(0.3)  # longer than max_idle: the client must not write to it again
        assert lean.request("POST", "/api/v1/jobs", json_body={"args": [2]})[0] == 201
    finally:
        lean.close()
    assert seen.connections == 2


def test_an_idempotent_request_closed_unanswered_is_sent_again(server: tuple[str, Seen]) -> None:
    url, seen = server
    seen.drop_reused = True
    lean = LeanHTTP(url, {}, timeout=10)
    try:
        assert lean.request("GET", "/api/v1/jobs")[0] == 200
        assert lean.request("GET", "/api/v1/jobs")[0] == 200  # reused, dropped, sent again
        # A POST is never sent twice: the caller learns that the connection closed.
        with pytest.raises(httpx.RemoteProtocolError):
            lean.request("POST", "/api/v1/jobs", json_body={"args": [1]})
    finally:
        lean.close()
    assert [r["body"] for r in seen.requests] == [None, None]  # the two GETs, no POST
    assert seen.connections == 2


def test_threads_share_a_client(server: tuple[str, Seen]) -> None:
    url, _ = server
    with Client(url) as client, ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: client.enqueue(JobCall.named("add", i)), range(200)))
    assert ids == [f"id-{i}" for i in range(200)]


def test_an_error_answer_raises_api_error(server: tuple[str, Seen]) -> None:
    url, _ = server
    with Client(url) as client, pytest.raises(ApiError) as raised:
        client.enqueue(JobCall.named("refused"))
    assert (raised.value.status, raised.value.code) == (422, "invalid_job")
    assert "no such job" in str(raised.value)


def test_no_server_raises_httpx_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with Client(f"http://127.0.0.1:{port}") as client, pytest.raises(httpx.ConnectError):
            client.enqueue(JobCall.named("add", 1))
