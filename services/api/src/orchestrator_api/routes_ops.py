"""Probes and scrapes: always served, whatever the auth settings."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orchestrator_api.runtime import runtime_of

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when the store answers; a broker outage is reported but does not make it 503,
    since enqueued jobs wait in the outbox until RabbitMQ is back."""
    runtime = runtime_of(request)
    store_ok = await runtime.store_reachable()
    checks = {"store": store_ok, "broker": runtime.broker.connected}
    return JSONResponse(
        {"status": "ok" if store_ok else "unavailable", "checks": checks},
        status_code=200 if store_ok else 503,
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
