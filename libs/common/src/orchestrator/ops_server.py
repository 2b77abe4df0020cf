"""The small HTTP server of roles without an API: /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]
#: Cheap and local (no store or broker round trip): a liveness probe must not fail because a
#: dependency is slow, only because this process cannot go on.
LivenessCheck = Callable[[], dict[str, bool]]


def ops_app(ready: ReadinessCheck, live: LivenessCheck | None = None) -> Starlette:
    async def healthz(_: Request) -> Response:
        checks = live() if live is not None else {}
        if all(checks.values()):
            return JSONResponse({"status": "ok", "checks": checks} if checks else {"status": "ok"})
        return JSONResponse({"status": "stalled", "checks": checks}, status_code=503)

    async def readyz(_: Request) -> Response:
        checks = await ready()
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
    )


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server inside a role's event loop: the role, not uvicorn, owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class OpsServer:
    """A running ops server; :meth:`stop` ends it the way uvicorn ends on a signal (no
    cancellation, so no ``CancelledError`` traceback from inside uvicorn)."""

    def __init__(self, server: uvicorn.Server) -> None:
        self._server = server
        self._task = asyncio.create_task(server.serve(), name=f"ops-server-{server.config.port}")

    async def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except BaseException:
            # A server that does not stop in time (a stuck request) is cancelled after all.
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


async def serve(
    host: str, port: int, ready: ReadinessCheck, *, live: LivenessCheck | None = None
) -> OpsServer | None:
    """Start serving in the background of the current event loop; port 0 serves nothing."""
    if port == 0:
        return None
    config = uvicorn.Config(ops_app(ready, live), host=host, port=port, log_level="warning")
    return OpsServer(_EmbeddedServer(config))
