"""The FastAPI application: ``create_app(settings)``; nothing connects until its lifespan runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from orchestrator.filters import JobFilter
from orchestrator.settings import Settings
from orchestrator_api import (
    dashboard,
    errors,
    routes_batches,
    routes_dead_letters,
    routes_info,
    routes_jobs,
    routes_ops,
    routes_recurring,
)
from orchestrator_api.auth import AuthMiddleware
from orchestrator_api.guards import BrowserGuardMiddleware
from orchestrator_api.middleware import (
    BodyLimitMiddleware,
    RequestMetricsMiddleware,
    SecurityHeadersMiddleware,
    TracingMiddleware,
    UnexpectedErrorMiddleware,
)
from orchestrator_api.peers import Proxies
from orchestrator_api.runtime import Runtime


def create_app(settings: Settings, filters: Sequence[JobFilter] | None = None) -> FastAPI:
    """The API; ``filters`` (else ``ORCHESTRATOR_FILTERS``) run where jobs are created."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings, filters)
        app.state.runtime = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Orchestrator",
        description="Background jobs on RabbitMQ with state in PostgreSQL or SQLite.",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's own telemetry is off: one server span per request is TracingMiddleware's
        # (it skips probes and names the route), its per-endpoint spans cost the enqueue path
        # ~3 spans a request, and its OTel log records of validation failures may quote input.
        telemetry={
            "tracing": False,
            "operation_spans": False,
            "logs": False,
            "metrics": False,
            "auto_configure": False,
        },
    )
    app.state.settings = settings
    errors.install(app)
    for module in (routes_jobs, routes_batches, routes_recurring, routes_dead_letters, routes_info):
        app.include_router(module.router, responses=errors.API_ERRORS)
    app.include_router(routes_ops.router)
    app.include_router(dashboard.router)
    proxies = Proxies(settings.trusted_proxy_networks)
    # Added last = outermost: metrics see every answer, every answer gets the security headers,
    # web pages are refused before auth, and auth runs before a body is read.
    app.add_middleware(UnexpectedErrorMiddleware)  # innermost: a 500 keeps the connection
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(AuthMiddleware, keys=settings.parsed_api_keys)
    app.add_middleware(
        BrowserGuardMiddleware,
        keyless=not settings.parsed_api_keys,
        allowed_hosts=settings.allowed_hosts,
        allowed_origins=settings.allowed_origins,
        proxies=proxies,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestMetricsMiddleware)
    app.add_middleware(TracingMiddleware)  # outermost: the server span covers everything
    return app
