"""A worker that cannot make progress says so: with its store stalled (a TCP proxy that moves
no byte) while an outcome is being written, /readyz answers 503 naming ``writes``, and /healthz
fails once that has lasted ORCHESTRATOR_WORKER_STALL_SECONDS, so Kubernetes' liveness probe
(deploy/k8s: /healthz on the ops port) restarts it. Once the store answers, both recover."""

from __future__ import annotations

import asyncio
import socket
from contextlib import closing
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from tests.poison import jobs
from tests.poison.conftest import enqueue, new_job, wait_all
from tests.support.proxy import TcpProxy


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _until(http: httpx.AsyncClient, path: str, status: int, timeout: float = 90) -> Any:
    """Poll the probe until it answers ``status`` (the worker reports; nothing is timed)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            answer = await http.get(path, timeout=5)
            if answer.status_code == status:
                return answer.json()
        except httpx.HTTPError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{path} never answered {status}")
        await asyncio.sleep(0.1)


async def test_a_stalled_store_makes_the_worker_unready_then_not_live(start_worker, postgres_url):
    port = _free_port()
    with TcpProxy(urlsplit(postgres_url).port or 5432) as proxy:
        running = await start_worker(
            _through(postgres_url, proxy.port),
            worker_ops_port=port,
            worker_stall_seconds=3,
            lease_seconds=2,
        )
        settings = running.settings
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await _until(http, "/healthz", 200))["status"] == "ok"
            assert (await _until(http, "/readyz", 200))["checks"]["writes"] is True
            job = new_job("poison.held", "ok")
            await enqueue(settings, [job])
            await wait_all(settings, [job.id], {"Processing"})
            proxy.partition()  # the outcome's write will hang: no byte moves
            jobs.RELEASE.set()
            ready = await _until(http, "/readyz", 503)
            assert ready["checks"]["writes"] is False
            live = await _until(http, "/healthz", 503)
            assert live == {"status": "stalled", "checks": {"writes": False}}
            proxy.heal()
            await _until(http, "/healthz", 200)
            await _until(http, "/readyz", 200)
        await wait_all(settings, [job.id], {"Succeeded"})
