"""Entry point: ``orchestrator-api`` serves the HTTP API on ``api_host:api_port``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from orchestrator.process import Signals, exit_now, start_role
from orchestrator.settings import Settings
from orchestrator_api.app import create_app
from orchestrator_api.http_protocol import protocol_class


class _Server(uvicorn.Server):
    """Uvicorn under the roles' one signal rule (``orchestrator.process.Signals``): the first
    SIGTERM/SIGINT finishes the requests under way and exits 0; a person's second one exits at
    once. (Uvicorn's own handling would take the echo of a Ctrl-C in ``orchestrator dev`` for a
    second signal, and re-raises the signal at the end, exiting 143.)"""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        signals = Signals().install()
        loop = asyncio.get_running_loop()
        stopping = loop.create_task(self._stop_on(signals), name="api-signals")
        try:
            yield
        finally:
            stopping.cancel()

    async def _stop_on(self, signals: Signals) -> None:
        await signals.stop.wait()
        self.should_exit = True
        await signals.now.wait()
        exit_now(0, "second signal: stopping at once")


def server(settings: Settings) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        # Uvicorn's lines go through the root handler too (console or JSON: prepare_service).
        log_config=None,
        # The auth rules trust the socket's peer address only: never rewrite it from headers.
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        # Slow clients are dropped: a deadline on each request's head (http_protocol), on
        # its body (BodyLimitMiddleware), and on idle keep-alive connections.
        http=protocol_class(settings.header_timeout_seconds),
        timeout_keep_alive=settings.keep_alive_seconds,
    )
    return _Server(config)


async def serve(settings: Settings) -> None:
    """Serve until stopped (SIGINT/SIGTERM); the CLI calls this."""
    await server(settings).serve()


def main() -> None:
    start_role("api", serve)


if __name__ == "__main__":
    main()
