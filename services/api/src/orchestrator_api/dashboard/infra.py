"""Queues (depth and consumers from RabbitMQ, processing from the store) and servers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from orchestrator import job_search, store
from orchestrator.db import db_now
from orchestrator.lifecycle import State
from orchestrator.store import search as store_search
from orchestrator_api.dashboard.web import PREFIX, render
from orchestrator_api.runtime import runtime_of

router = APIRouter(prefix=PREFIX)

#: A server whose last heartbeat is older than this many heartbeat periods is flagged stale
#: (the janitor removes it after ten).
STALE_HEARTBEATS = 3


@router.get("/queues", response_class=HTMLResponse)
async def queues(request: Request) -> HTMLResponse:
    runtime = runtime_of(request)
    async with runtime.engine.connect() as conn:
        names = await store_search.queue_names(conn)
        processing = await store.processing_by_queue(conn)
        enqueued = {
            name: await store_search.bounded_count(
                conn, job_search.Search(state=State.ENQUEUED, queue=name)
            )
            for name in names
        }
    # A passive declare per queue (the API's broker link): ready messages and consumers.
    depths = await asyncio.gather(*(runtime.broker.depth(name) for name in names))
    rows = [
        {
            "name": name,
            "ready": ready,
            "consumers": consumers,
            "enqueued": enqueued[name],
            "processing": processing.get(name, 0),
            "work_queue": runtime.broker.topology.work_queue(name).name,
        }
        for name, (ready, consumers) in zip(names, depths, strict=True)
    ]
    return render(
        request,
        "queues.html",
        title="Queues",
        rows=rows,
        broker_connected=runtime.broker.connected,
    )


@router.get("/servers", response_class=HTMLResponse)
async def servers(request: Request) -> HTMLResponse:
    runtime = runtime_of(request)
    async with runtime.engine.connect() as conn:
        rows = await store.list_servers(conn)
        now = await db_now(conn)
    stale_after = timedelta(seconds=runtime.settings.heartbeat_seconds * STALE_HEARTBEATS)
    items = [
        {"row": row, "stale": now - row.heartbeat_at > stale_after, "age": now - row.heartbeat_at}
        for row in rows
    ]
    return render(request, "servers.html", title="Servers", items=items, stale_after=stale_after)
