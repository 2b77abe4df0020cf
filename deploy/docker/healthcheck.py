"""Docker HEALTHCHECK of an Orchestrator role: ``python healthcheck.py ROLE [PATH]``.

Exits 0 when the role answers 200 on ``PATH`` (default ``/readyz``: store reachable, and for a
worker the broker connected) on this container's loopback, 1 otherwise. Slim images have no
curl, and this uses the standard library only: it runs every few seconds, and importing the
orchestrator package would cost about a second of CPU each time. Ports come from the same
``ORCHESTRATOR_*`` variables as the settings, with the same defaults (tests/deploy checks both).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

#: role -> (the setting holding its HTTP port, that setting's default)
ROLE_PORTS: dict[str, tuple[str, int]] = {
    "api": ("ORCHESTRATOR_API_PORT", 5001),
    "worker": ("ORCHESTRATOR_WORKER_OPS_PORT", 9101),
    "scheduler": ("ORCHESTRATOR_SCHEDULER_OPS_PORT", 9102),
    "janitor": ("ORCHESTRATOR_JANITOR_OPS_PORT", 9103),
}


def port_of(role: str, environ: Mapping[str, str]) -> int:
    variable, default = ROLE_PORTS[role]
    return int(environ.get(variable, default))


def check(role: str, path: str = "/readyz", environ: Mapping[str, str] = os.environ) -> int:
    """The exit status: 0 when ``path`` answers 200, or when the role serves no port (0)."""
    port = port_of(role, environ)
    if port == 0:
        sys.stderr.write(f"{role}: ops server off (port 0), nothing to check\n")
        return 0
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:  # a 503 arrives as HTTPError (a URLError)
        sys.stderr.write(f"{role}: {url}: {exc}\n")
        return 1


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ROLE_PORTS or len(argv) > 2:
        sys.stderr.write(f"usage: healthcheck.py {{{'|'.join(ROLE_PORTS)}}} [PATH]\n")
        return 2
    return check(argv[0], *argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
