"""Read-only views: stats, the catalog and the service instances."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from orchestrator import store
from orchestrator_api.runtime import Runtime, runtime_of

router = APIRouter(prefix="/api/v1", tags=["info"])


async def collect_stats(runtime: Runtime) -> dict[str, Any]:
    """Counts per state from the store; per queue, ready and consumers from RabbitMQ (null when
    the broker cannot say) and processing from the store."""
    async with runtime.engine.connect() as conn:
        counts = await store.state_counts(conn)
        processing = await store.processing_by_queue(conn)
        names = sorted(await store.known_queues(conn))
    depths = await asyncio.gather(*(runtime.broker.depth(name) for name in names))
    queues = [
        {
            "name": name,
            "ready": ready,
            "consumers": consumers,
            "processing": processing.get(name, 0),
        }
        for name, (ready, consumers) in zip(names, depths, strict=True)
    ]
    return {"states": counts, "queues": queues}


def public_server(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "role": row.role,
        "host": row.host,
        "pid": row.pid,
        "queues": list(row.queues),
        "concurrency": row.concurrency,
        "started_at": row.started_at.isoformat(),
        "heartbeat_at": row.heartbeat_at.isoformat(),
    }


async def collect_servers(runtime: Runtime) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        rows = await store.list_servers(conn)
    return [public_server(row) for row in rows]


@router.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    """``{states: {<State>: count}, queues: [{name, ready, consumers, processing}]}``."""
    return await collect_stats(runtime_of(request))


@router.get("/catalog")
async def catalog(request: Request) -> dict[str, Any]:
    """Every job the API accepts, with the JSON Schema of its arguments."""
    registrations = await runtime_of(request).catalog.all()
    return {"items": [registrations[name].public() for name in sorted(registrations)]}


@router.get("/servers")
async def servers(request: Request) -> dict[str, Any]:
    """Every service instance that announced itself, with its last heartbeat."""
    return {"items": await collect_servers(runtime_of(request))}
