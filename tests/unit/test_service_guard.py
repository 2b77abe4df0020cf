"""The guard that keeps this tier free of services (tests/support/service_guard.py): it refuses
and records a connection to the store's or the broker's port, lets any other through, and names
the fixtures that need either."""

from __future__ import annotations

import socket

import pytest

from tests.support.service_guard import (
    SERVICE_PORTS,
    ServiceReachedError,
    refusing_service_ports,
    service_fixtures,
)


def test_fixtures_built_on_a_service_are_named() -> None:
    assert service_fixtures(["tmp_path", "postgres_admin_url", "postgres_url"]) == {
        "postgres_admin_url"
    }
    assert service_fixtures(["namespace", "amqp_url"]) == {"amqp_url"}
    assert service_fixtures(["tmp_path", "monkeypatch"]) == set()


@pytest.mark.parametrize("port", sorted(SERVICE_PORTS))
def test_a_connection_to_a_service_port_is_refused_and_recorded(port: int) -> None:
    with refusing_service_ports() as attempts:
        with pytest.raises(ServiceReachedError, match=f"127.0.0.1:{port}"):
            socket.create_connection(("127.0.0.1", port), timeout=1)
        with socket.socket() as sock, pytest.raises(ServiceReachedError):
            sock.connect_ex(("127.0.0.1", port))
    assert attempts == [f"127.0.0.1:{port}", f"127.0.0.1:{port}"]


def test_other_connections_pass_and_the_socket_is_restored_after() -> None:
    patched = socket.socket.connect
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with refusing_service_ports(frozenset({1})) as attempts:
            socket.create_connection(server.getsockname(), timeout=5).close()
        assert attempts == []
    assert socket.socket.connect is patched
