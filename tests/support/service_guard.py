"""What keeps the unit tier (tests/unit) free of services: a test there that asks for a fixture
of PostgreSQL or RabbitMQ, or opens a connection to either's port, fails.

Ports rather than hosts: a unit test may run a server of its own on a free port (the lean client's
tests do), never the store or the broker, wherever they run.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

#: The session fixtures every PostgreSQL or RabbitMQ fixture of tests/conftest.py builds on.
SERVICE_FIXTURES = frozenset({"postgres_admin_url", "amqp_url"})


def _port(variable: str, default: int) -> int:
    try:
        return urlsplit(os.environ.get(variable, "")).port or default
    except ValueError:
        return default


#: PostgreSQL's and RabbitMQ's usual ports, and those of the addresses the tests are given.
SERVICE_PORTS = frozenset(
    {
        5432,
        5672,
        _port("ORCHESTRATOR_TEST_POSTGRES_URL", 5432),
        _port("ORCHESTRATOR_TEST_AMQP_URL", 5672),
    }
)


class ServiceReachedError(RuntimeError):
    """A unit test tried to connect to the store's or the broker's port."""


def service_fixtures(fixture_names: Iterable[str]) -> set[str]:
    """Those of a test's fixtures (their closure) that need PostgreSQL or RabbitMQ."""
    return SERVICE_FIXTURES & set(fixture_names)


@contextmanager
def refusing_service_ports(ports: frozenset[int] = SERVICE_PORTS) -> Iterator[list[str]]:
    """Within, a connection to one of ``ports`` raises :class:`ServiceReachedError` at once;
    the list yielded records every attempt (a library may swallow the error and retry)."""
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def checked(real: Callable[[socket.socket, Any], Any]) -> Callable[[socket.socket, Any], Any]:
        def connect(sock: socket.socket, address: Any) -> Any:
            if isinstance(address, tuple) and len(address) >= 2 and address[1] in ports:
                attempts.append(f"{address[0]}:{address[1]}")
                sock.close()  # its opener sees no OSError, so would not close it
                raise ServiceReachedError(
                    f"a unit test connected to {address[0]}:{address[1]} (PostgreSQL or "
                    "RabbitMQ): move it out of tests/unit"
                )
            return real(sock, address)

        return connect

    socket.socket.connect = checked(real_connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = checked(real_connect_ex)  # type: ignore[method-assign]
    try:
        yield attempts
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
