"""Who is calling, as far as the request can tell: the socket's peer, and what a configured
reverse proxy says about the client behind it (``ORCHESTRATOR_TRUSTED_PROXIES``).

Forwarded headers are believed only from a trusted proxy's address, and never for the
loopback-only rule, which looks at the socket alone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case bytes), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def peer_address(scope: Scope) -> Address | None:
    client = scope.get("client")
    return _address(str(client[0])) if client else None


def is_loopback(scope: Scope) -> bool:
    """The socket's peer is this host (forwarded headers never count)."""
    address = peer_address(scope)
    return address is not None and address.is_loopback


class Proxies:
    """The trusted reverse proxies and what their forwarded headers say."""

    def __init__(self, networks: Sequence[Network]) -> None:
        self.networks = list(networks)

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def _forwarded(self, scope: Scope, name: bytes) -> str | None:
        """The value the nearest proxy set (the last in the list), if the peer is trusted."""
        if not self.trusts(peer_address(scope)):
            return None
        value = header(scope, name)
        if not value:
            return None
        return value.split(",")[-1].strip() or None

    def client(self, scope: Scope) -> str:
        """The client's address: through trusted proxies, the nearest untrusted hop of
        ``X-Forwarded-For``. IPv6 clients count per /64 (one host usually holds a whole one)."""
        address = peer_address(scope)
        if self.trusts(address):
            hops = (header(scope, b"x-forwarded-for") or "").split(",")
            for hop in reversed(hops):
                hop_address = _address(hop)
                if hop_address is None:
                    break
                address = hop_address
                if not self.trusts(hop_address):
                    break
        if address is None:
            return "unknown"
        if isinstance(address, ipaddress.IPv6Address):
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        return str(address)

    def scheme(self, scope: Scope) -> str:
        forwarded = self._forwarded(scope, b"x-forwarded-proto")
        if forwarded in ("http", "https"):
            return forwarded
        return str(scope.get("scheme", "http"))

    def host(self, scope: Scope) -> str | None:
        """The host the client asked for: ``X-Forwarded-Host`` from a trusted proxy, else
        ``Host`` (lower-case, port kept)."""
        value = self._forwarded(scope, b"x-forwarded-host") or header(scope, b"host")
        return value.strip().lower() if value else None


def host_name(host: str) -> str:
    """``Host`` without its port: ``[::1]:5001`` -> ``::1``, ``a.b:80`` -> ``a.b``."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        return name
    return host
