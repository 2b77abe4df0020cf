"""Slow clients are dropped by the real API server (``orchestrator api``, uvicorn): 200
connections trickling their headers or bodies, or saying nothing, are closed by the server's
deadlines while a normal request, and the project's Client, are served meanwhile (issue 11,
"What was seen" 11: "200 trickling clients were never timed out").

Raw sockets against a real process, over loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orchestrator import Client
from orchestrator.errors import ApiError
from orchestrator.migrate import upgrade
from tests.support.system import ROOT, free_port

HEAD_TIMEOUT = 2
BODY_TIMEOUT = 2
#: The test gives up (and fails) if a slow client is still connected this long after the
#: deadline that should have dropped it: a bound on a liveness property, not a speed figure.
GIVE_UP_SECONDS = 90
TRICKLE_EVERY = 0.5


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    database = f"sqlite:///{tmp_path}/slow.db"
    upgrade(database)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        ORCHESTRATOR_DATABASE_URL=database,
        ORCHESTRATOR_AMQP_URL="amqp://guest:guest@127.0.0.1:1/",  # not needed here
        ORCHESTRATOR_API_PORT=str(port),
        ORCHESTRATOR_HEADER_TIMEOUT_SECONDS=str(HEAD_TIMEOUT),
        ORCHESTRATOR_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        ORCHESTRATOR_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator_cli", "api"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Server(f"http://127.0.0.1:{port}", port, process, log)
    try:
        _wait_until_serving(running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_serving(server: Server) -> None:
    """Until /healthz answers; fails at once if the process exits."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the API exited:\n{server.log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the API never answered:\n{server.log.read_text()[-3000:]}")


@dataclass
class Outcome:
    kind: str
    closed_after: float | None = None  # seconds from connecting until the server closed it
    answer: bytes = b""


async def _slow_client(port: int, kind: str) -> Outcome:
    """One misbehaving connection; returns when the server closes it (or at the give-up bound)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    outcome = Outcome(kind)
    if kind == "body":
        writer.write(
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        )
    elif kind == "head":
        writer.write(b"GET /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    try:
        while time.monotonic() - started < GIVE_UP_SECONDS:
            try:
                data = await asyncio.wait_for(reader.read(65536), TRICKLE_EVERY)
            except TimeoutError:
                if kind != "idle":
                    writer.write(b"a")  # one more byte: never finishing
                    await writer.drain()
                continue
            outcome.answer += data
            if not data:
                outcome.closed_after = time.monotonic() - started
                break
    except (ConnectionResetError, BrokenPipeError):
        outcome.closed_after = time.monotonic() - started
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return outcome


async def _normal_requests(url: str) -> list[int]:
    """While the slow clients hang on: ordinary requests, each answered."""
    statuses = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for _ in range(5):
            statuses.append((await http.get("/api/v1/jobs")).status_code)
            await asyncio.sleep(TRICKLE_EVERY)
    return statuses


async def _storm(server: Server) -> tuple[list[Outcome], list[int]]:
    kinds = ["head"] * 120 + ["body"] * 60 + ["idle"] * 20
    slow = [asyncio.create_task(_slow_client(server.port, kind)) for kind in kinds]
    await asyncio.sleep(TRICKLE_EVERY)  # they are connected and trickling
    statuses = await _normal_requests(server.url)
    return list(await asyncio.gather(*slow)), statuses


def test_two_hundred_trickling_clients_are_dropped_while_others_are_served(
    server: Server,
) -> None:
    outcomes, statuses = asyncio.run(_storm(server))
    assert statuses == [200] * 5
    still_open = [o.kind for o in outcomes if o.closed_after is None]
    assert still_open == [], f"{len(still_open)} slow clients were never dropped"
    for outcome in outcomes:
        if outcome.kind == "head":
            assert outcome.answer.startswith(b"HTTP/1.1 408"), outcome.answer[:200]
            assert b'"request_timeout"' in outcome.answer
        elif outcome.kind == "body":
            assert outcome.answer.startswith(b"HTTP/1.1 408"), outcome.answer[:200]
            assert b'"body_timeout"' in outcome.answer
        else:
            assert outcome.answer == b""  # an idle connection is just closed
    slowest = max(o.closed_after or 0 for o in outcomes)
    print(f"200 slow clients dropped; the last after {slowest:.1f} s")
    # The server is fine afterwards, and the project's Client (body-less POSTs, no Origin)
    # passes the browser guards over real HTTP.
    with Client(server.url) as client:
        assert client.list()["items"] == []
        with pytest.raises(ApiError) as missing:
            client.requeue(str(uuid.uuid4()))
        assert missing.value.status == 404


def test_oversized_headers_are_refused(server: Server) -> None:
    async def send_big_head() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(100):  # 100 KiB of headers, more than the 64 KiB allowed
            writer.write(b"X-Big: " + b"b" * 1024 + b"\r\n")
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(65536), GIVE_UP_SECONDS)
        finally:
            writer.close()

    answer = asyncio.run(send_big_head())
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def _read_to_end(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_a_client_still_sending_its_refused_request_reads_the_answer(server: Server) -> None:
    """A client that writes its whole request before reading, as most do, gets the 431 of its
    oversized head: the server reads and drops the rest (4 MiB of body here) until the client is
    done, instead of closing at once and answering what still arrives with a reset."""
    head = b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4194304\r\n"
    head += b"".join(b"X-Big: " + b"b" * 1024 + b"\r\n" for _ in range(100)) + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=GIVE_UP_SECONDS) as sock:
        sock.sendall(head + b"x" * 4 * 1024 * 1024)  # a reset fails it: ConnectionResetError
        sock.shutdown(socket.SHUT_WR)
        answer = _read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b'"headers_too_large"' in answer


def test_a_body_over_the_limit_gets_one_answer(server: Server) -> None:
    """The body of a request answered early (413) is the rest of that request, not the head of
    the next one: it is never refused again as an oversized head."""
    head = b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += b"Content-Length: 4194304\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=GIVE_UP_SECONDS) as sock:
        sock.sendall(head + b" " * 4 * 1024 * 1024)
        sock.shutdown(socket.SHUT_WR)
        answer = _read_to_end(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1, answer
