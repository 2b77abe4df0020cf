"""Entry point: ``orchestrator-api`` serves the HTTP API on ``api_host:api_port``."""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from pydantic import ValidationError

from orchestrator.process import prepare_service
from orchestrator.settings import Settings, load_settings
from orchestrator_api.app import create_app
from orchestrator_api.http_protocol import protocol_class


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
    return uvicorn.Server(config)


async def serve(settings: Settings) -> None:
    """Serve until stopped (SIGINT/SIGTERM); the CLI calls this."""
    await server(settings).serve()


def main() -> None:
    try:
        settings = load_settings()
    except ValidationError as error:
        # A refusal, not a crash: say which setting and why (values are never quoted).
        sys.exit(f"orchestrator-api: refusing to start, invalid settings:\n{error}")
    prepare_service("api", settings)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
