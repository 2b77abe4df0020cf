"""A store outage longer than a lease: the scheduler pauses, resumes by itself, and expires no
lease for one lease period after the store returns, so a live worker renews first."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from orchestrator import store
from orchestrator.db import create_engine, db_now
from orchestrator.settings import Settings
from orchestrator.store import jobs_table
from orchestrator_scheduler.scheduler import Scheduler
from tests.recovery.test_lease_expiry import _running
from tests.support.proxy import TcpProxy

LEASE = 3.0


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def _state(engine: sa.ext.asyncio.AsyncEngine, job_id: uuid.UUID) -> str:
    async with engine.connect() as conn:
        return str((await store.get_job(conn, job_id)).state)


async def test_after_an_outage_live_workers_renew_before_any_lease_expires(
    make_settings: Callable[..., Settings], postgres_url: str
) -> None:
    engine = create_engine(postgres_url)
    with TcpProxy(urlsplit(postgres_url).port or 5432) as proxy:
        settings = make_settings(
            _through(postgres_url, proxy.port),
            scheduler_ops_port=0,
            lease_seconds=LEASE,
            heartbeat_seconds=0.5,
            lease_expiry_interval_seconds=0.2,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(Scheduler(settings).run(stop))
        try:
            async with engine.connect() as conn:
                now = await db_now(conn)
            at = now - timedelta(seconds=28)  # claimed with 30 s leases: both end 2 s from now
            live, dead = (
                await _running(engine, "worker:live", at),
                await _running(engine, "worker:dead", at),
            )
            await asyncio.sleep(1.0)
            proxy.cut()  # the scheduler loses the store for longer than a lease
            await asyncio.sleep(2 * LEASE)
            assert {await _state(engine, j) for j in (live, dead)} == {"Processing"}
            proxy.resume()
            await asyncio.sleep(1.0)
            async with engine.begin() as conn:  # the live worker's heartbeat gets through
                await conn.execute(
                    sa.update(jobs_table)
                    .where(jobs_table.c.id == live)
                    .values(lease_until=await db_now(conn) + timedelta(seconds=60))
                )
            await asyncio.sleep(1.0)
            assert await _state(engine, dead) == "Processing"  # held back: one lease period
            for _ in range(100):
                if await _state(engine, dead) == "Enqueued":
                    break
                await asyncio.sleep(0.1)
            assert await _state(engine, dead) == "Enqueued"  # and then expired, by itself
            assert await _state(engine, live) == "Processing"
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await engine.dispose()
