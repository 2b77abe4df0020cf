"""The harness's clean-up never fails a test: removing a namespace is bounded and swallows what
the broker does (a failure there once handed later tests another test's ``tmp_path``)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.system import remove_namespace


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a stuck broker)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"amqp://guest:guest@127.0.0.1:{server.getsockname()[1]}/"
    finally:
        stop.set()
        thread.join(5)
        for connection in accepted:
            connection.close()
        server.close()


def test_removing_a_namespace_on_a_stuck_broker_gives_up_without_raising(
    silent_broker: str,
) -> None:
    began = time.monotonic()
    remove_namespace(silent_broker, "tstuck", within=1.0)  # returns: nothing raised
    assert time.monotonic() - began < 30  # bounded (generous for a loaded machine)


def test_removing_a_namespace_on_a_refused_port_does_not_raise() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        remove_namespace(f"amqp://guest:guest@127.0.0.1:{port}/", "trefused", within=5.0)
