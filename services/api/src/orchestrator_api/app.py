"""The FastAPI application: ``create_app(settings)``; nothing connects until its lifespan runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

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
from orchestrator_api.dashboard.csrf import csrf_secret
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
from orchestrator_api.throttle import FailureThrottle


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

    # /docs and /redoc from the package's own Swagger UI and ReDoc files (works offline; the
    # auth middleware guards them, their assets and /openapi.json like the dashboard).
    app = FastAPIOffline(
        static_url="/docs/static",
        favicon_url="/hangfire/static/favicon.svg",
        # Swagger UI's validator badge would fetch from another site.
        swagger_ui_parameters={"validatorUrl": None},
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
    throttle = FailureThrottle(settings.auth_failure_burst, settings.auth_failures_per_minute)
    app.state.proxies = proxies
    app.state.auth_throttle = throttle  # shared with the login form
    app.state.csrf_secret = csrf_secret(settings.parsed_api_keys)
    # Added last = outermost: metrics see every answer, every answer gets the security headers,
    # web pages are refused before auth, and auth runs before a body is read.
    app.add_middleware(UnexpectedErrorMiddleware)  # innermost: a 500 keeps the connection
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_bytes,
        timeout=settings.body_timeout_seconds,
    )
    app.add_middleware(
        AuthMiddleware, keys=settings.parsed_api_keys, throttle=throttle, proxies=proxies
    )
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
